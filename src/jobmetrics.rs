//! `kt backup --metrics-file` and `kt restore --metrics-file`: the run's
//! result in the Prometheus text format for node-exporter's textfile
//! collector (a `*.prom` file in its directory), so that a cron job is
//! monitored without a wrapper script. Written atomically (a hidden temp
//! file beside it, then a rename: the collector never reads half a file),
//! after successful and failed runs alike (`kt_<job>_success 0`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::error::Result;

/// One finished run of a job.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// `backup` or `restore`: the metric names' second word.
    pub job: &'static str,
    pub success: bool,
    pub duration: Duration,
    /// The backup written, or the backup files read (0 when unknown).
    pub bytes: u64,
    /// Rows per table of the backup (empty when unknown).
    pub rows: BTreeMap<String, u64>,
    /// When the run ended (Unix seconds).
    pub finished: i64,
}

impl JobResult {
    /// The textfile: one gauge per line, with HELP and TYPE.
    pub fn render(&self) -> String {
        let job = self.job;
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, samples: &[(String, String)]| {
            let _ = writeln!(out, "# HELP kt_{job}_{name} {help}");
            let _ = writeln!(out, "# TYPE kt_{job}_{name} gauge");
            for (labels, value) in samples {
                let _ = writeln!(out, "kt_{job}_{name}{labels} {value}");
            }
        };
        let one = |v: String| vec![(String::new(), v)];
        gauge("success", &format!("1 if the last kt {job} succeeded, 0 if it failed"), &one(u8::from(self.success).to_string()));
        gauge("duration_seconds", &format!("How long the last kt {job} ran"), &one(format!("{:.3}", self.duration.as_secs_f64())));
        gauge("bytes", &format!("Bytes of the backup the last kt {job} wrote or read"), &one(self.bytes.to_string()));
        let rows: Vec<(String, String)> =
            self.rows.iter().map(|(table, n)| (format!("{{table=\"{}\"}}", escape(table)), n.to_string())).collect();
        gauge("rows", &format!("Rows per table of the backup of the last kt {job}"), &rows);
        gauge("last_run_timestamp_seconds", &format!("When the last kt {job} ended, Unix time"), &one(self.finished.to_string()));
        out
    }

    /// Writes [`JobResult::render`] to `path` atomically, mode 0644 (the
    /// collector runs as its own account; nothing secret is in it).
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::fsutil::write_atomic(path, self.render().as_bytes(), 0o644, None)
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_says_so() {
        let result = JobResult {
            job: "backup",
            success: false,
            duration: Duration::from_millis(1500),
            bytes: 0,
            rows: BTreeMap::from([("deposits".to_string(), 3), ("odd\"name".to_string(), 1)]),
            finished: 1_700_000_000,
        };
        let text = result.render();
        assert!(text.contains("\nkt_backup_success 0\n"), "{text}");
        assert!(text.contains("\nkt_backup_duration_seconds 1.500\n"), "{text}");
        assert!(text.contains("\nkt_backup_rows{table=\"deposits\"} 3\n"), "{text}");
        assert!(text.contains("kt_backup_rows{table=\"odd\\\"name\"} 1"), "{text}");
        assert!(text.contains("# TYPE kt_backup_last_run_timestamp_seconds gauge\nkt_backup_last_run_timestamp_seconds 1700000000\n"));
    }
}
