//! The line a completed transfer leaves in its conversation, so history and
//! search find what was sent and received, and where it is.

use std::path::Path;

use kirc_proto::human_bytes;

use crate::store::TransferRecord;

/// What the line says: the name, the size, the count for a folder, where
/// the files are, and for a single file its BLAKE3 hash (a folder's are in
/// the transfer, one per file). Names on the receiving side are the
/// sanitised ones the files were saved under, so nothing the sender chose
/// reaches the terminal unfiltered.
pub(super) fn completed(record: &TransferRecord, download_dir: &Path) -> String {
    let total: u64 = record.files.iter().map(|file| file.size).sum();
    let single = match record.files.as_slice() {
        [file] if file.offered_path.len() == 1 => Some(file),
        _ => None,
    };
    let (verb, name, place) = if record.outgoing {
        let name = single
            .or(record.files.first())
            .and_then(|file| file.offered_path.first())
            .cloned()
            .unwrap_or_default();
        ("sent", name, format!("from {}", record.local_path))
    } else {
        let saved = download_dir.join(&record.local_path);
        let preposition = if single.is_some() {
            "saved as"
        } else {
            "saved in"
        };
        (
            "received",
            record.local_path.clone(),
            format!("{preposition} {}", saved.display()),
        )
    };
    match single {
        Some(file) => format!(
            "{verb} {name} ({}), {place}, blake3 {}",
            human_bytes(total),
            hex(&file.hash)
        ),
        None => {
            let count = record.files.len();
            let files = if count == 1 { "file" } else { "files" };
            format!(
                "{verb} {name}/ ({count} {files}, {}), {place}",
                human_bytes(total)
            )
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::identity::ActorId;
    use crate::store::{TransferFileRecord, TransferState};
    use uuid::Uuid;

    fn file(path: &[&str], local: &str, size: u64) -> TransferFileRecord {
        TransferFileRecord {
            offered_path: path.iter().map(|part| (*part).to_owned()).collect(),
            local_path: local.to_owned(),
            size,
            hash: [0xab; 32],
            pieces_hash: [0; 32],
            piece_hashes: None,
            verified_pieces: 0,
            modified_ns: None,
            renamed: false,
            saved: true,
        }
    }

    fn record(outgoing: bool, local_path: &str, files: Vec<TransferFileRecord>) -> TransferRecord {
        TransferRecord {
            id: Uuid::nil(),
            conversation_id: Uuid::nil(),
            peer: ActorId::from_slice(&[7; 16]).unwrap(),
            outgoing,
            state: TransferState::Complete,
            reason: String::new(),
            piece_bytes: 1 << 18,
            local_path: local_path.to_owned(),
            created_unix_ms: 0,
            updated_unix_ms: 0,
            files,
        }
    }

    #[test]
    fn each_side_says_what_moved_and_where_it_is() {
        let hash = "ab".repeat(32);
        let downloads = Path::new("/home/u/Downloads");
        let cases = [
            (
                record(
                    false,
                    "report (1).pdf",
                    vec![file(&["report.pdf"], "report (1).pdf", 2 << 20)],
                ),
                format!(
                    "received report (1).pdf (2.00 MiB), saved as /home/u/Downloads/report (1).pdf, blake3 {hash}"
                ),
            ),
            (
                record(
                    true,
                    "/srv/report.pdf",
                    vec![file(&["report.pdf"], "/srv/report.pdf", 2 << 20)],
                ),
                format!("sent report.pdf (2.00 MiB), from /srv/report.pdf, blake3 {hash}"),
            ),
            (
                record(
                    false,
                    "photos",
                    vec![
                        file(&["photos", "a.jpg"], "photos/a.jpg", 1000),
                        file(&["photos", "b.jpg"], "photos/b.jpg", 24),
                    ],
                ),
                "received photos/ (2 files, 1.00 KiB), saved in /home/u/Downloads/photos"
                    .to_owned(),
            ),
            (
                record(
                    true,
                    "/srv/photos",
                    vec![file(&["photos", "a.jpg"], "/srv/photos/a.jpg", 5)],
                ),
                "sent photos/ (1 file, 5 B), from /srv/photos".to_owned(),
            ),
        ];
        for (record, line) in cases {
            assert_eq!(completed(&record, downloads), line);
        }
    }
}
