//! Playbook runs on the alert's page: shown to readers, approved by analysts through a form
//! with the session's CSRF token, and recorded in the alert's history and the audit log.

use std::sync::{Arc, Mutex};

use axum::http::{Method, StatusCode};
use chrono::Utc;
use vigil_access::{AccessConfig, AuditFilter, Role};
use vigil_ui::playbook_runs::{RunError, RunFuture};
use vigil_ui::{guard, page_router, Gate, PlaybookRuns, RunView, UiState};

use crate::pages::{fixture, form, send};

/// One run waiting for approval; approvals are recorded, not executed.
struct FakeRuns {
    run: Mutex<RunView>,
    approved_by: Mutex<Vec<String>>,
}

impl PlaybookRuns for FakeRuns {
    fn runs(&self, alert_id: &str) -> Result<Vec<RunView>, String> {
        let run = self.run.lock().unwrap().clone();
        Ok(if run.alert_id == alert_id {
            vec![run]
        } else {
            vec![]
        })
    }

    fn approve<'a>(&'a self, run_id: &'a str, actor: &'a str) -> RunFuture<'a> {
        Box::pin(async move {
            let mut run = self.run.lock().unwrap();
            if run.id != run_id {
                return Err(RunError::NotFound(run_id.to_owned()));
            }
            if run.state != "awaiting_approval" {
                return Err(RunError::Conflict("not awaiting approval".into()));
            }
            self.approved_by.lock().unwrap().push(actor.to_owned());
            run.state = "succeeded".into();
            run.actor = Some(actor.to_owned());
            Ok(run.clone())
        })
    }

    fn undo<'a>(&'a self, run_id: &'a str, _actor: &'a str) -> RunFuture<'a> {
        Box::pin(async move { Err(RunError::Conflict(format!("{run_id} cannot be undone"))) })
    }
}

fn csrf_in(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("a CSRF field") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn an_analyst_approves_a_run_from_the_alert_page_and_it_is_recorded() {
    let f = fixture().await;
    let alert_id = f.alert.id.to_string();
    let run_id = format!("{alert_id}:contain:0");
    let runs = Arc::new(FakeRuns {
        run: Mutex::new(RunView {
            id: run_id.clone(),
            alert_id: alert_id.clone(),
            playbook_id: "contain".into(),
            action: "aws.iam.deactivate_access_key".into(),
            mode: "approval".into(),
            state: "awaiting_approval".into(),
            summary: Some("Deactivate access key <b>AKIAEXAMPLE</b> of IAM user ci-deploy".into()),
            plan: None,
            result: None,
            error: None,
            attempts: 0,
            undoable: false,
            actor: None,
            updated: Utc::now(),
        }),
        approved_by: Mutex::new(Vec::new()),
    });
    let gate = Arc::new(Gate::new(
        f.access.clone(),
        None,
        AccessConfig::default(),
        false,
    ));
    let app = guard(
        page_router(UiState {
            store: f.store.clone(),
            gate: gate.clone(),
            rules: Default::default(),
            backtests: None,
            playbook_runs: Some(runs.clone()),
            notifications: None,
            silences: None,
        }),
        gate,
    );
    let page_path = format!("/alerts/{alert_id}");
    let approve_path = format!("/alerts/{alert_id}/playbook-runs/{run_id}/approve");
    let get = |session: String| {
        let (app, path) = (app.clone(), page_path.clone());
        async move {
            let (status, _, body) =
                send(&app, Method::GET, &path, &[("cookie", &session)], None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };

    // A viewer sees the run and its plan (as text), but no button.
    let viewer = f.user("vic", Role::Viewer).await;
    let page = get(viewer.clone()).await;
    assert!(page.contains("awaiting_approval"), "{page}");
    assert!(
        page.contains("Deactivate access key &lt;b&gt;AKIAEXAMPLE&lt;/b&gt;"),
        "{page}"
    );
    assert!(!page.contains(&approve_path), "{page}");

    let analyst = f.user("ana", Role::Analyst).await;
    let page = get(analyst.clone()).await;
    assert!(
        page.contains(&format!(r#"action="{approve_path}""#)),
        "{page}"
    );
    let csrf = csrf_in(&page);

    // Without the session's token, nothing happens.
    let (status, _, _) = send(
        &app,
        Method::POST,
        &approve_path,
        &[("cookie", &analyst)],
        Some(&form(&[("csrf", "wrong")])),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(runs.approved_by.lock().unwrap().is_empty());
    // A viewer is refused by the gate, token or not.
    let viewer_csrf = csrf_in(&get(viewer.clone()).await);
    let (status, _, _) = send(
        &app,
        Method::POST,
        &approve_path,
        &[("cookie", &viewer)],
        Some(&form(&[("csrf", &viewer_csrf)])),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(runs.approved_by.lock().unwrap().is_empty());

    let (status, headers, body) = send(
        &app,
        Method::POST,
        &approve_path,
        &[("cookie", &analyst)],
        Some(&form(&[("csrf", &csrf)])),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(headers["location"], page_path.as_str());
    assert_eq!(*runs.approved_by.lock().unwrap(), ["ana"]);
    // A second approval is a conflict, and acts no more.
    let (status, _, _) = send(
        &app,
        Method::POST,
        &approve_path,
        &[("cookie", &analyst)],
        Some(&form(&[("csrf", &csrf)])),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(runs.approved_by.lock().unwrap().len(), 1);

    // In the alert's history under the analyst's name, and in the audit log.
    let history = f.store.alert(&alert_id).unwrap().history;
    assert!(
        history.iter().any(|h| h.actor == "ana"
            && h.new
                .as_deref()
                .is_some_and(|n| n.contains("Playbook contain") && n.contains("approved"))),
        "{history:?}"
    );
    let audit = f.access.audit_entries(&AuditFilter::default()).unwrap();
    assert!(
        audit.iter().any(|e| e.record.action == "playbook.approve"
            && e.record.actor == "ana"
            && e.record.target.as_deref() == Some(run_id.as_str())),
        "{audit:?}"
    );
    // A run of another alert cannot be approved through this alert's form.
    let (status, _, _) = send(
        &app,
        Method::POST,
        &format!("/alerts/other/playbook-runs/{run_id}/approve"),
        &[("cookie", &analyst)],
        Some(&form(&[("csrf", &csrf)])),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
