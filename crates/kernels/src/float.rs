//! The scalar type kernels are generic over: `f32` to train, `f64` to check gradients.

use faer::traits::RealField;

/// A real floating-point scalar usable both in our slice kernels and in faer's GEMM.
///
/// Kernels are written once over `T: Float`; training instantiates them at `f32` for speed and
/// the gradient checks at `f64`, where central finite differences are accurate to ~1e-10.
pub trait Float:
    RealField
    + Copy
    + Send
    + Sync
    + Default
    + PartialOrd
    + std::fmt::Debug
    + std::fmt::Display
    + std::ops::Neg<Output = Self>
    + std::iter::Sum
    + 'static
{
    /// Converts from `f64`, rounding to the nearest representable value.
    fn from_f64(x: f64) -> Self;
    /// Widens (or copies) to `f64`.
    fn to_f64(self) -> f64;
    /// `e^self`.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// `true` unless NaN or infinite.
    fn is_finite(self) -> bool;
    /// The larger of two values (NaN-ignoring, like `f32::max`).
    fn max(self, other: Self) -> Self;
    /// `self · a + b` rounded once (a fused multiply-add), as a GEMM kernel's FMA computes it.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// The same slice seen as `f32`, if `Self` is `f32`: lets generic code hand its buffers to a
    /// kernel written for `f32` only (see `packed`), with no cast and no `unsafe`.
    fn as_f32s(x: &[Self]) -> Option<&[f32]>;
    /// [`Float::as_f32s`], writable.
    fn as_f32s_mut(x: &mut [Self]) -> Option<&mut [f32]>;
    /// `e^self` for arguments `<= 0` (softmax after subtracting the row maximum), written so the
    /// compiler can vectorise a loop of them: no call, no branch. `f32` uses a Cephes-style
    /// range reduction and degree-6 polynomial (within 2 ulp of `f32::exp` on `[-87, 0]`, and
    /// `~1e-38` instead of a smaller number below that); `f64` is exactly [`Float::exp`], so
    /// gradient checks in `f64` see the true function.
    fn exp_nonpositive(self) -> Self;
    /// [`Float::sigmoid`] for vectorised kernels: branch-free, built on
    /// [`Float::exp_nonpositive`] (within 2 ulp of `sigmoid` for `f32`; exactly as accurate for `f64`).
    #[inline(always)]
    fn sigmoid_fast(self) -> Self {
        let one = Self::from_f64(1.0);
        let neg_abs = if self < Self::from_f64(0.0) { self } else { -self };
        let e = neg_abs.exp_nonpositive();
        let s = one / (one + e);
        if self < Self::from_f64(0.0) { e * s } else { s }
    }
    /// [`Float::tanh`] for vectorised kernels: branch-free. `f32`: an odd Taylor polynomial for
    /// `|x| < 0.25`, `(1 − e^{−2|x|}) / (1 + e^{−2|x|})` above (within a few ulp); `f64`: libm.
    fn tanh_fast(self) -> Self;
    /// The logistic function `1 / (1 + e^-x)`, computed without overflow for large `|x|`.
    #[inline]
    fn sigmoid(self) -> Self {
        let one = Self::from_f64(1.0);
        if self >= Self::from_f64(0.0) {
            one / (one + (-self).exp())
        } else {
            let e = self.exp();
            e / (one + e)
        }
    }
}

macro_rules! impl_float {
    ($t:ty) => {
        impl Float for $t {
            #[inline]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            #[inline]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$t>::mul_add(self, a, b)
            }
            #[inline]
            fn as_f32s(x: &[Self]) -> Option<&[f32]> {
                F32View::view(x)
            }
            #[inline]
            fn as_f32s_mut(x: &mut [Self]) -> Option<&mut [f32]> {
                F32View::view_mut(x)
            }
            #[inline(always)]
            fn exp_nonpositive(self) -> Self {
                FastExp::exp_nonpositive_impl(self)
            }
            #[inline(always)]
            fn tanh_fast(self) -> Self {
                FastExp::tanh_impl(self)
            }
        }
    };
}

impl_float!(f32);
impl_float!(f64);

impl FastExp for f32 {
    #[inline(always)]
    fn exp_nonpositive_impl(self) -> f32 {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        // ln 2 split in two so `n * C1` is exact (Cody–Waite).
        const C1: f32 = 0.693_359_4;
        const C2: f32 = -2.121_944_4e-4;
        // Adding 1.5·2²³ rounds to the nearest integer n and leaves n in the low mantissa bits of
        // the sum, so 2^n is built with integer ops: no call, no float-to-int cast (Rust's `as` is
        // saturating and defeats vectorisation).
        const ROUND: f32 = 12_582_912.0;
        const ROUND_BITS: u32 = 0x4B40_0000;
        // A select, not `f32::max`: NaN must stay NaN so the loss can report it.
        let x = if self < -87.0 { -87.0 } else { self };
        let shifted = x * LOG2E + ROUND;
        let n = shifted - ROUND;
        let r = x - n * C1 - n * C2;
        let mut p = 1.987_569_1e-4_f32;
        p = p * r + 1.398_199_9e-3;
        p = p * r + 8.333_452e-3;
        p = p * r + 4.166_579_6e-2;
        p = p * r + 1.666_666_5e-1;
        p = p * r + 0.5;
        let e = p * r * r + r + 1.0;
        // 2^n for n in [-126, 0]: exponent field n + 127.
        let two_n = f32::from_bits(shifted.to_bits().wrapping_sub(ROUND_BITS).wrapping_add(127) << 23);
        e * two_n
    }

    #[inline(always)]
    fn tanh_impl(self) -> f32 {
        let a = if self < 0.0 { -self } else { self };
        // Large |x|: from e^{-2|x|}, with no cancellation worse than 1 - e^{-0.5}.
        let e = (-2.0 * a).exp_nonpositive_impl();
        let large = (1.0 - e) / (1.0 + e);
        // Small |x|: x − x³/3 + 2x⁵/15 − 17x⁷/315 + 62x⁹/2835 (next term < 1e-8 relative at 0.25).
        let x2 = a * a;
        let mut p = 62.0 / 2835.0_f32;
        p = p * x2 - 17.0 / 315.0;
        p = p * x2 + 2.0 / 15.0;
        p = p * x2 - 1.0 / 3.0;
        let small = a + a * x2 * p;
        let t = if a < 0.25 { small } else { large };
        if self < 0.0 { -t } else { t }
    }
}

impl FastExp for f64 {
    #[inline(always)]
    fn exp_nonpositive_impl(self) -> f64 {
        self.exp()
    }
    #[inline(always)]
    fn tanh_impl(self) -> f64 {
        self.tanh()
    }
}

/// Private helper for [`Float::as_f32s`]: `Some` for `f32` only.
trait F32View: Sized {
    fn view(x: &[Self]) -> Option<&[f32]>;
    fn view_mut(x: &mut [Self]) -> Option<&mut [f32]>;
}

impl F32View for f32 {
    fn view(x: &[f32]) -> Option<&[f32]> {
        Some(x)
    }
    fn view_mut(x: &mut [f32]) -> Option<&mut [f32]> {
        Some(x)
    }
}

impl F32View for f64 {
    fn view(_: &[f64]) -> Option<&[f32]> {
        None
    }
    fn view_mut(_: &mut [f64]) -> Option<&mut [f32]> {
        None
    }
}

/// Private helper so the trait methods can have per-type bodies without a macro arm per type.
trait FastExp {
    fn exp_nonpositive_impl(self) -> Self;
    fn tanh_impl(self) -> Self;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_within_two_ulp_of_libm_on_the_softmax_range() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let fast = x.exp_nonpositive();
            let exact = f64::from(x).exp();
            let ulp = f64::from(f32::EPSILON) * exact;
            worst = worst.max((f64::from(fast) - exact).abs() / ulp);
            x += 0.000_731;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(0.0f32.exp_nonpositive(), 1.0);
        assert!((-1000.0f32).exp_nonpositive() < 1e-37);
        assert_eq!((-3.5f64).exp_nonpositive(), (-3.5f64).exp());
        assert!(f32::NAN.exp_nonpositive().is_nan());
    }

    #[test]
    fn fast_tanh_and_sigmoid_are_within_a_few_ulp() {
        let (mut worst_tanh, mut worst_sig) = (0.0f64, 0.0f64);
        let mut x = -30.0f32;
        while x <= 30.0 {
            let t = f64::from(x).tanh();
            let ulp = f64::from(f32::EPSILON) * t.abs().max(f64::from(f32::MIN_POSITIVE));
            worst_tanh = worst_tanh.max((f64::from(x.tanh_fast()) - t).abs() / ulp);
            let s = 1.0 / (1.0 + (-f64::from(x)).exp());
            let ulp = f64::from(f32::EPSILON) * s;
            worst_sig = worst_sig.max((f64::from(x.sigmoid_fast()) - s).abs() / ulp);
            x += 0.000_37;
        }
        assert!(worst_tanh <= 4.0, "tanh: {worst_tanh} ulp");
        assert!(worst_sig <= 4.0, "sigmoid: {worst_sig} ulp");
        assert_eq!(0.0f32.tanh_fast(), 0.0);
        assert_eq!((0.3f64).tanh_fast(), 0.3f64.tanh());
        assert!(((-2.0f64).sigmoid_fast() - 1.0 / (1.0 + 2.0f64.exp())).abs() < 1e-16);
    }
}
