//! The release root on disk: its layout, the `RELEASES` file, atomic writes, packaging a
//! release into a tarball, and unpacking (verifying) one.
