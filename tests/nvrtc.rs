//! The NVRTC fallback compiles every kernel: the embedded sources are what a user without
//! nvcc runs. Needs libnvrtc (scripts/install-cuda.sh puts it in `<cache>/cu13/lib`), not a GPU.

const FAMILIES: [&str; 6] = ["softmax", "topk", "topp", "sparsemax", "bok", "edits"];
const DTYPES: [&str; 3] = ["f32", "f16", "bf16"];

/// The kernel entry points of a PTX module.
fn entries(ptx: &str) -> Vec<String> {
    ptx.lines()
        .filter_map(|l| l.split(".entry ").nth(1))
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn nvrtc_compiles_every_kernel_family_for_each_dtype_and_target() {
    if !samplex::gpu::nvrtc_present() {
        assert!(
            std::env::var_os("SAMPLEX_REQUIRE_NVRTC").is_none(),
            "SAMPLEX_REQUIRE_NVRTC is set but libnvrtc cannot be loaded"
        );
        eprintln!("SKIPPED nvrtc_compiles_every_kernel_family_for_each_dtype_and_target: libnvrtc not found (set LD_LIBRARY_PATH)");
        return;
    }
    let src = samplex::gpu::kernels_source();
    for arch in ["compute_80", "compute_90"] {
        let ptx = samplex::gpu::module::compile_with_nvrtc(arch)
            .unwrap_or_else(|e| panic!("{arch}: {e}"))
            .to_src();
        let names = entries(&ptx);
        for name in &names {
            assert!(
                name.starts_with("samplex_"),
                "{arch}: entry {name} breaks the naming convention"
            );
        }
        // samplex_bok_cluster exists for every target, with its body only where clusters do.
        for dtype in DTYPES {
            let name = format!("samplex_bok_cluster_{dtype}");
            assert!(names.contains(&name), "{arch}: no {name}");
        }
        let cluster_body =
            ptx.contains("barrier.cluster.arrive") && ptx.contains("mapa.shared::cluster");
        assert_eq!(
            cluster_body,
            arch == "compute_90",
            "{arch}: the cluster primitives must be compiled exactly for sm_90"
        );
        for family in FAMILIES {
            if !src.contains(&format!("// ---- {family}.cu ----")) {
                continue; // the family's kernel file does not exist yet
            }
            for dtype in DTYPES {
                let prefix = format!("samplex_{family}_");
                let found = names.iter().any(|n| {
                    n.starts_with(&prefix)
                        && (n.ends_with(&format!("_{dtype}"))
                            || n.ends_with(&format!("_{dtype}_v1"))
                            || n.ends_with(&format!("_{dtype}_any")))
                });
                assert!(found, "{arch}: no {family} kernel for {dtype} in {names:?}");
            }
        }
    }
}

#[test]
fn the_fatbin_is_embedded_when_ci_requires_it() {
    if std::env::var_os("SAMPLEX_REQUIRE_FATBIN").is_none() {
        eprintln!(
            "SKIPPED the_fatbin_is_embedded_when_ci_requires_it: SAMPLEX_REQUIRE_FATBIN not set"
        );
        return;
    }
    assert!(
        samplex::gpu::module::has_fatbin(),
        "built without nvcc: no fatbin embedded"
    );
}
