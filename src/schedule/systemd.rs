//! `kt schedule systemd`: a `.service` + `.timer` pair that runs a cron
//! entry's command at the same times, for hosts that prefer timers. The
//! times come from [`Schedule::on_calendar`] (several `OnCalendar=` lines
//! fire at the earliest of them); `Persistent=true` runs a missed run once
//! after downtime, never several times.

use crate::schedule::cronfile::Entry;

/// The unit names' common stem: `kt-schedule-NAME`.
pub fn unit_stem(entry: &Entry) -> String {
    format!("kt-schedule-{}", entry.name)
}

/// (service unit text, timer unit text).
pub fn units(entry: &Entry) -> (String, String) {
    let stem = unit_stem(entry);
    let exec = entry.argv.iter().map(|a| exec_word(a)).collect::<Vec<_>>().join(" ");
    let service = format!(
        "# Written by kt schedule systemd from the entry {name} ({expr}).\n\
         [Unit]\n\
         Description=kt schedule {name}: {what}\n\
         Documentation=man:kt-schedule(1)\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         User={user}\n\
         ExecStart={exec}\n\
         # The backup's path; errors go to the journal from stderr.\n\
         StandardOutput=null\n",
        name = entry.name,
        expr = entry.schedule.source,
        what = entry.argv.get(1..).map(|a| a.join(" ")).unwrap_or_default().replace('%', "%%"),
        user = entry.user,
    );
    let mut timer = format!(
        "# Written by kt schedule systemd from the entry {name} ({expr}).\n\
         [Unit]\n\
         Description=kt schedule {name} ({expr})\n\
         \n\
         [Timer]\n",
        name = entry.name,
        expr = entry.schedule.source,
    );
    if entry.schedule.is_reboot() {
        timer.push_str("OnBootSec=1min\n");
    } else {
        for spec in entry.schedule.on_calendar() {
            timer.push_str(&format!("OnCalendar={spec}\n"));
        }
        timer.push_str("Persistent=true\n");
    }
    timer.push_str(&format!("Unit={stem}.service\n\n[Install]\nWantedBy=timers.target\n"));
    (service, timer)
}

/// One word of `ExecStart=`: double-quoted when needed, with `\`, `"`, `$`
/// and `%` escaped as systemd.service(5) and systemd.unit(5) want.
fn exec_word(word: &str) -> String {
    let escaped = word.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "$$").replace('%', "%%");
    let plain = !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.,:=@+".contains(&b));
    if plain {
        escaped
    } else {
        format!("\"{escaped}\"")
    }
}
