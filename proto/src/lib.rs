//! cloudai's wire protocol, package `cloudai.v1`, and its conversions to domain types.
//!
//! - [`pb`]: the generated prost/tonic code (the only place generated code lives).
//! - [`convert`]: `From`/`TryFrom` between [`pb`] messages and `cloudai_queue` types.
//! - [`transport`]: what a failed connection means (TLS mistakes told apart), the TLS
//!   name of a URL, and the key/certificate pair check, shared by the CLI and the worker.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for gRPC server reflection.
//!
//! The `.proto` sources are under `proto/cloudai/v1/` and are compiled at build time by
//! protox, so no system `protoc` is needed.

#![warn(missing_docs)]

pub mod convert;
pub mod transport;

/// Generated code for `cloudai.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("cloudai.v1");
}

/// Encoded `FileDescriptorSet` of every cloudai `.proto`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cloudai_descriptor.bin"));

pub use convert::ConvertError;
