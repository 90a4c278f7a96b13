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
        }
    };
}

impl_float!(f32);
impl_float!(f64);
