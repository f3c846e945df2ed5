//! Building an upload: every refusal is typed and says what would be accepted.

use crate::onedrive::{Drive, OneDriveConfig, OneDriveUpload, Target};
use crate::{BuildError, SourceFingerprint};

fn build(target: Target, size: u64, fragment: u64) -> Result<OneDriveUpload, BuildError> {
    OneDriveUpload::builder(target, size)
        .fragment_size(fragment)
        .build()
}

#[test]
fn fragment_sizes_are_checked_at_build_time() {
    let t = || Target::path("/a.bin");
    assert_eq!(build(t(), 10, 0).err(), Some(BuildError::ChunkSizeZero));
    assert_eq!(
        build(t(), 10, 327_681).err(),
        Some(BuildError::ChunkSizeNotMultiple {
            size: 327_681,
            multiple: 327_680,
            nearest_below: 327_680
        })
    );
    assert_eq!(
        build(t(), 10, 100).err(),
        Some(BuildError::ChunkSizeNotMultiple {
            size: 100,
            multiple: 327_680,
            nearest_below: 0
        })
    );
    assert_eq!(
        build(t(), 10, 62_914_560 + 327_680).err(),
        Some(BuildError::ChunkSizeTooLarge {
            size: 62_914_560 + 327_680,
            max: 62_914_560
        })
    );
    assert!(build(t(), 10, 62_914_560).is_ok());
    assert!(build(t(), 10, 327_680).is_ok());
    // The default is 10 MiB.
    let m = OneDriveUpload::builder(t(), 1).build().unwrap();
    assert_eq!(m.options().fragment_size.get(), 10_485_760);
}

#[test]
fn bad_targets_are_refused() {
    let bad = [
        Target::path(""),
        Target::path("/"),
        Target::path("/dir/"),
        Target::path("/a//b"),
        Target::path("/a/../b"),
        Target::path("/a\u{0}b"),
        Target::child(Drive::Me, "", "x"),
        Target::child(Drive::Me, "P", "a/b"),
        Target::child(Drive::Me, "P", ".."),
        Target::item(Drive::Id("".into()), "I"),
        Target::item(Drive::Me, "I\n"),
    ];
    for t in bad {
        let e = build(t.clone(), 10, 327_680).err();
        assert!(
            matches!(
                e,
                Some(BuildError::InvalidPath { .. } | BuildError::InvalidId { .. })
            ),
            "{t:?}: {e:?}"
        );
    }
}

#[test]
fn other_options_are_checked() {
    let t = Target::path("/a.bin");
    let e = OneDriveUpload::builder(t.clone(), 300_000_000_000)
        .build()
        .err();
    assert_eq!(
        e,
        Some(BuildError::FileTooLarge {
            size: 300_000_000_000,
            max: 250_000_000_000
        })
    );
    for base in ["graph.microsoft.com", "ftp://x/y", "https://x/y?q=1", ""] {
        let e = OneDriveUpload::builder(t.clone(), 1)
            .config(OneDriveConfig::with_base(base))
            .build()
            .err();
        assert!(
            matches!(e, Some(BuildError::InvalidBaseUrl { .. })),
            "{base}"
        );
    }
    let e = OneDriveUpload::builder(t.clone(), 1)
        .if_match("bad\netag")
        .build()
        .err();
    assert!(matches!(
        e,
        Some(BuildError::InvalidOption {
            option: "if_match",
            ..
        })
    ));
    let e = OneDriveUpload::builder(t.clone(), 1)
        .fingerprint(SourceFingerprint::new(2, "x"))
        .build()
        .err();
    assert_eq!(
        e,
        Some(BuildError::FingerprintSize {
            fingerprint: 2,
            size: 1
        })
    );
    let e = OneDriveUpload::builder(t, 1)
        .description("d".repeat(2000))
        .build()
        .err();
    assert!(matches!(
        e,
        Some(BuildError::InvalidOption {
            option: "description",
            ..
        })
    ));
}

#[test]
fn national_cloud_bases_are_accepted() {
    for base in [
        crate::onedrive::limits::GRAPH_GLOBAL,
        crate::onedrive::limits::GRAPH_US_GOV,
        crate::onedrive::limits::GRAPH_US_DOD,
        crate::onedrive::limits::GRAPH_CHINA,
        "http://127.0.0.1:8080/onedrive/v1.0",
    ] {
        assert!(
            OneDriveUpload::builder(Target::path("/a"), 1)
                .config(OneDriveConfig::with_base(base))
                .build()
                .is_ok(),
            "{base}"
        );
    }
}
