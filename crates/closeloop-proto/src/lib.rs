//! Generated protobuf and gRPC types for `closeloop.v1`, built from
//! `proto/closeloop/v1/` without a system `protoc`, and the mapping between
//! the domain's ticket events and their wire form.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("closeloop.v1");
}

/// Encoded `FileDescriptorSet` of every closeloop proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/closeloop_descriptor.bin"));

pub mod convert;

pub mod status;
