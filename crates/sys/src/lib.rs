//! The one low-level module: every `unsafe` block of peapod lives here, each with a
//! `// SAFETY:` comment. It wraps the few syscalls that `nix` does not expose safely.
//!
//! Nothing here knows about containers, images or pods.
