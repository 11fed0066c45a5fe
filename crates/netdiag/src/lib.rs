//! Diagnose Kubernetes pod networking on the node where the pod runs.
//!
//! This facade re-exports the parts of netdiag.

pub use netdiag_analyze as analyze;
pub use netdiag_capture as capture;
pub use netdiag_cri as cri;
pub use netdiag_kernel as kernel;
pub use netdiag_netns as netns;
pub use netdiag_pcapio as pcapio;
pub use netdiag_wire as wire;
