"""Numba building blocks below ``@njit``: LLVM intrinsics and hand-written vector IR.

Bit casts and ``maxnum`` (whose reduction LLVM vectorises without fast-math flags); the 512-bit
function attributes, the register-blocked micro-kernel and the 16-lane threshold mask; a float32
``exp`` for arguments <= 0. The kernels of :mod:`numba_kernels` are written with these.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_F32_ZERO = np.float32(0.0)
_F32_ONE = np.float32(1.0)
#: Items per packed panel (two 16-lane vectors).
PANEL = 32
#: Users per micro-kernel call (2 x GROUP zmm accumulators out of 32 registers).
GROUP = 12
_NU = GROUP

# --------------------------------------------------------------------------------------------------
# LLVM intrinsics: bit casts and maxnum (whose reduction LLVM vectorises without fast-math flags).
# --------------------------------------------------------------------------------------------------


@intrinsic
def _f32_bits(typingctx, x):
    """float32 -> its IEEE bits as uint32."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@intrinsic
def _bits_f32(typingctx, x):
    """Integer bits (low 32 bits used) -> float32."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        if x.bitwidth > 32:
            value = builder.trunc(value, ir.IntType(32))
        elif x.bitwidth < 32:
            value = builder.zext(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(x), codegen


@intrinsic
def _fmax32(typingctx, a, b):
    """llvm.maxnum.f32 (a NaN operand is ignored; no NaN ever reaches it here)."""
    if a != types.float32 or b != types.float32:
        return None

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.maxnum", [f32], ir.FunctionType(f32, [f32, f32]))
        return builder.call(fn, args)

    return types.float32(types.float32, types.float32), codegen


# --------------------------------------------------------------------------------------------------
# float32 exp for arguments <= 0 (Cephes expf polynomial, ~1 ulp); exp(-inf) == 0 exactly.
# --------------------------------------------------------------------------------------------------

_EXP_LO = np.float32(-87.0)  # exp(-87) ~ 1.6e-38, still a normal float32; below: 0
_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_HALF = np.float32(0.5)
_P0 = np.float32(1.9875691500e-4)
_P1 = np.float32(1.3981999507e-3)
_P2 = np.float32(8.3334519073e-3)
_P3 = np.float32(4.1665795894e-2)
_P4 = np.float32(1.6666665459e-1)
_P5 = np.float32(5.0000001201e-1)
_I32_127 = np.int32(127)
_I32_23 = np.int32(23)


@njit(cache=True, nogil=True, fastmath={"contract"})
def _exp_nonpos(x):
    xc = x if x > _EXP_LO else _EXP_LO
    fx = np.floor(xc * _LOG2E + _HALF)
    r = xc - fx * _LN2_HI
    r = r - fx * _LN2_LO
    z = r * r
    y = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
    y = y * z + r + _F32_ONE
    scale = _bits_f32((np.int32(fx) + _I32_127) << _I32_23)
    return y * scale if x >= _EXP_LO else _F32_ZERO


# --------------------------------------------------------------------------------------------------
# Hand-written vector IR: 512-bit attributes, the micro-kernel, the threshold mask.
# --------------------------------------------------------------------------------------------------

_I64 = ir.IntType(64)
_F32 = ir.FloatType()
_V16 = ir.VectorType(_F32, 16)


def _allow_zmm(builder):
    # llvmlite only accepts a fixed list of attribute names; string attributes are written verbatim.
    attrs = builder.function.attributes
    set.add(attrs, '"min-legal-vector-width"="512"')
    set.add(attrs, '"prefer-vector-width"="512"')


@intrinsic
def _zmm(typingctx):
    """Let LLVM use 512-bit vectors in the calling function (no code)."""

    def codegen(context, builder, signature, args):
        _allow_zmm(builder)
        return context.get_dummy_value()

    return types.none(), codegen


def _c_array(aryty, ndim):
    return (
        isinstance(aryty, types.Array) and aryty.dtype == types.float32 and aryty.ndim == ndim and aryty.layout == "C"
    )


def _splat(builder, value):
    undef = ir.Constant(_V16, ir.Undefined)
    vec = builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(vec, undef, ir.Constant(ir.VectorType(ir.IntType(32), 16), [0] * 16))


@intrinsic
def _micro(typingctx, tile, col, ub, g, packed, p):
    """tile[g + r, col + c] = ub[g + r, :] . packed[p, :, c] for r < _NU, c < 32 (in-order FMA chain)."""
    if not (
        _c_array(tile, 2)
        and _c_array(ub, 2)
        and _c_array(packed, 3)
        and isinstance(col, types.Integer)
        and isinstance(g, types.Integer)
        and isinstance(p, types.Integer)
    ):
        return None

    def codegen(context, builder, signature, args):
        _allow_zmm(builder)
        tile_a = context.make_array(signature.args[0])(context, builder, args[0])
        ub_a = context.make_array(signature.args[2])(context, builder, args[2])
        packed_a = context.make_array(signature.args[4])(context, builder, args[4])
        col_v, g_v, p_v = (context.cast(builder, args[i], signature.args[i], types.int64) for i in (1, 3, 5))
        ldt = cgutils.unpack_tuple(builder, tile_a.shape, 2)[1]
        dim = cgutils.unpack_tuple(builder, ub_a.shape, 2)[1]
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V16, [_V16] * 3), "llvm.fma.v16f32")
        c16 = ir.Constant(_I64, 16)
        c32 = ir.Constant(_I64, PANEL)
        urows = [builder.gep(ub_a.data, [builder.mul(builder.add(g_v, ir.Constant(_I64, r)), dim)]) for r in range(_NU)]
        pbase = builder.gep(packed_a.data, [builder.mul(builder.mul(p_v, dim), c32)])
        zero = ir.Constant(_V16, [0.0] * 16)
        pre = builder.block
        loop = builder.append_basic_block("micro_loop")
        done = builder.append_basic_block("micro_done")
        builder.cbranch(builder.icmp_signed(">", dim, ir.Constant(_I64, 0)), loop, done)
        builder.position_at_end(loop)
        kk = builder.phi(_I64)
        kk.add_incoming(ir.Constant(_I64, 0), pre)
        acc = []
        for _ in range(2 * _NU):
            phi = builder.phi(_V16)
            phi.add_incoming(zero, pre)
            acc.append(phi)
        prow = builder.gep(pbase, [builder.mul(kk, c32)])
        q0 = builder.load(builder.bitcast(prow, _V16.as_pointer()), align=64)
        q1 = builder.load(builder.bitcast(builder.gep(prow, [c16]), _V16.as_pointer()), align=64)
        new = []
        for r in range(_NU):
            a = _splat(builder, builder.load(builder.gep(urows[r], [kk])))
            new.append(builder.call(fma, [a, q0, acc[2 * r]]))
            new.append(builder.call(fma, [a, q1, acc[2 * r + 1]]))
        kk_next = builder.add(kk, ir.Constant(_I64, 1))
        tail = builder.block
        kk.add_incoming(kk_next, tail)
        for phi, value in zip(acc, new):
            phi.add_incoming(value, tail)
        builder.cbranch(builder.icmp_signed("<", kk_next, dim), loop, done)
        builder.position_at_end(done)
        final = []
        for value in new:  # phis first: they must open the block
            phi = builder.phi(_V16)
            phi.add_incoming(zero, pre)
            phi.add_incoming(value, tail)
            final.append(phi)
        tbase = builder.gep(tile_a.data, [builder.add(builder.mul(g_v, ldt), col_v)])
        for r in range(_NU):
            row = builder.gep(tbase, [builder.mul(ir.Constant(_I64, r), ldt)])
            builder.store(final[2 * r], builder.bitcast(row, _V16.as_pointer()), align=4)
            builder.store(final[2 * r + 1], builder.bitcast(builder.gep(row, [c16]), _V16.as_pointer()), align=4)
        return context.get_dummy_value()

    return types.none(tile, col, ub, g, packed, p), codegen


@intrinsic
def _gt_mask16(typingctx, row, j, threshold):
    """Bit t (t < 16) set iff row[j + t] > threshold; reads 16 floats from row.data + j (the caller
    guarantees they are inside the allocation)."""
    if not (
        isinstance(row, types.Array)
        and row.dtype == types.float32
        and row.ndim == 1
        and row.layout == "C"
        and isinstance(j, types.Integer)
        and threshold == types.float32
    ):
        return None

    def codegen(context, builder, signature, args):
        row_a = context.make_array(signature.args[0])(context, builder, args[0])
        j_v = context.cast(builder, args[1], signature.args[1], types.int64)
        ptr = builder.bitcast(builder.gep(row_a.data, [j_v]), _V16.as_pointer())
        vec = builder.load(ptr, align=4)
        bits = builder.fcmp_ordered(">", vec, _splat(builder, args[2]))
        mask = builder.bitcast(bits, ir.IntType(16))
        return builder.zext(mask, _I64)

    return types.int64(row, j, threshold), codegen


@intrinsic
def _ctz64(typingctx, x):
    """Count trailing zeros of a non-zero int64."""
    if x != types.int64:
        return None

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_I64, [_I64, ir.IntType(1)]), "llvm.cttz.i64"
        )
        return builder.call(fn, [args[0], ir.Constant(ir.IntType(1), 1)])

    return types.int64(types.int64), codegen
