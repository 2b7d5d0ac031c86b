//! The real kubectl against `peapod serve` (written next).
