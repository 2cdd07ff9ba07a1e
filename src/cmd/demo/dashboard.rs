//! Scene 9 (`--serve`): the dashboard on loopback, with an auditor's login token.

use std::sync::Arc;

use anyhow::{Context, Result};
use chipledger_domain::records::Role;

use super::Story;

pub(super) fn serve(story: Story, listen: &str) -> Result<()> {
    let (_, token) = story.ledger.create_token("demo auditor", Role::Auditor, &mut rand_core::OsRng)?;
    let token = token.reveal();
    let data_dir = story.dir.display().to_string();
    println!();
    chipledger_web::serve(Arc::new(story.ledger), listen, chipledger_web::ServerConfig::default(), move |addr| {
        // A reader that stops reading (a closed pipe) must not stop the server.
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "7. dashboard: http://{addr}/  (Ctrl-C stops it)");
        let _ = writeln!(out, "   log in as an auditor with this token (read and export only):");
        let _ = writeln!(out, "   {token}");
        let _ = writeln!(
            out,
            "   an admin token (acquisition form): chipledger --data-dir {data_dir} tokens create --role admin --name you"
        );
        let _ = out.flush();
    })
    .with_context(|| format!("serving the dashboard on {listen}"))?;
    Ok(())
}
