//! Builds the restorer blob: compiles `crates/restorer/src/blob.rs` as a freestanding
//! static PIE with the same rustc, flattens its loadable segments into one image and
//! records its entry point and relocations for `src/blob.rs` to embed.

use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use object::elf;
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, Object};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let src_dir = manifest.join("../restorer/src");
    let src = src_dir.join("blob.rs");
    println!("cargo::rerun-if-changed={}", src.display());
    println!(
        "cargo::rerun-if-changed={}",
        src_dir.join("abi.rs").display()
    );
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let elf_path = out_dir.join("restorer-blob.elf");
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());

    let status = Command::new(&rustc)
        .args([
            "--edition",
            "2024",
            "--crate-type",
            "bin",
            "--crate-name",
            "stasis_restorer_blob",
        ])
        .args([
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "debuginfo=0",
        ])
        .args(["-C", "relocation-model=pie", "-C", "force-unwind-tables=no"])
        .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib"])
        .args([
            "-C",
            "link-arg=-static-pie",
            "-C",
            "link-arg=-Wl,--build-id=none",
        ])
        .args([
            "-C",
            "link-arg=-Wl,-z,norelro",
            "-C",
            "link-arg=-Wl,--no-eh-frame-hdr",
        ])
        .arg("-o")
        .arg(&elf_path)
        .arg(&src)
        // The outer build's flags (coverage, sanitizers) must not leak into the blob.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("run rustc for the restorer blob");
    assert!(status.success(), "building the restorer blob failed");

    let data = std::fs::read(&elf_path).expect("read restorer blob");
    let file = ElfFile64::<Endianness>::parse(data.as_slice()).expect("parse restorer blob");
    let endian = file.endian();

    // Flatten PT_LOAD segments at their virtual addresses (the blob is linked at 0).
    let mut image = Vec::new();
    let mut mem_size = 0u64;
    for seg in file.elf_program_headers() {
        if seg.p_type(endian) != elf::PT_LOAD {
            continue;
        }
        let vaddr = seg.p_vaddr(endian);
        let bytes = seg.data(endian, data.as_slice()).expect("segment data");
        let end = vaddr + seg.p_memsz(endian);
        mem_size = mem_size.max(end);
        let need = (vaddr as usize) + bytes.len();
        if image.len() < need {
            image.resize(need, 0);
        }
        image[vaddr as usize..need].copy_from_slice(bytes);
    }
    assert!(!image.is_empty(), "restorer blob has no loadable segments");

    // Only R_X86_64_RELATIVE relocations can be applied by a plain copy.
    let mut relocs = Vec::new();
    if let Some(dynamic) = file.dynamic_relocations() {
        for (offset, reloc) in dynamic {
            match reloc.flags() {
                object::RelocationFlags::Elf { r_type } if r_type == elf::R_X86_64_RELATIVE => {
                    relocs.push((offset, reloc.addend()));
                }
                other => panic!("unsupported relocation {other:?} in the restorer blob"),
            }
        }
    }
    let entry = file.elf_header().e_entry(endian);

    std::fs::write(out_dir.join("restorer-blob.bin"), &image).expect("write blob image");
    let mut meta = String::new();
    writeln!(meta, "/// Entry point offset of the restorer blob.").unwrap();
    writeln!(meta, "pub const ENTRY: u64 = {entry};").unwrap();
    writeln!(
        meta,
        "/// Bytes the blob occupies in memory (its image plus zeroed data)."
    )
    .unwrap();
    writeln!(meta, "pub const MEM_SIZE: u64 = {mem_size};").unwrap();
    writeln!(meta, "/// R_X86_64_RELATIVE relocations: (offset, addend).").unwrap();
    writeln!(meta, "pub const RELOCS: &[(u64, i64)] = &{relocs:?};").unwrap();
    std::fs::write(out_dir.join("restorer-blob.rs"), meta).expect("write blob metadata");
}
