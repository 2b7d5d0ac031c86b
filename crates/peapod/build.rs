//! Links the `peapod` and `peapod-infra` binaries as a fixed-address (non-PIE) executable: a PIE's loader
//! rewrites every pointer in its relocated data at start-up (about 50,000 relocations,
//! ~0.9 MiB of pages), making them private to each process; every pod keeps a monitor
//! resident, so those pages were most of a pod's engine memory. Non-PIE, they stay clean
//! and shared. The cost is that the binary's own code is not address-randomized (libraries,
//! heap and stacks still are); see docs/architecture.md.

fn main() {
    println!("cargo:rustc-link-arg-bin=peapod=-no-pie");
    println!("cargo:rustc-link-arg-bin=peapod-infra=-no-pie");
}
