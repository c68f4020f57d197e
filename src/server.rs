//! `ticket-reservation serve`: prepare the database, start the background
//! jobs, serve until SIGTERM or Ctrl-C, then stop cleanly.

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::catalogue::seed;
use crate::config::Config;
use crate::error::{AppError, AppResult};
use crate::{AppState, clock, http, jobs};

/// How long shutdown waits for websockets to send their close frames.
const WEBSOCKET_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

pub async fn serve(config: Config) -> AppResult<()> {
    let listen_addr = config.listen_addr;
    let seed_demo = config.seed_demo;
    let state = AppState::start(config).await?;
    if seed_demo && seed::seed_if_empty(&state.pool, clock::now()).await? {
        tracing::info!("demo catalogue loaded");
    }
    let lifecycle = state.lifecycle.clone();
    let jobs = jobs::spawn(&state);
    let listener = TcpListener::bind(listen_addr)
        .await
        .map_err(|e| AppError::internal(format!("cannot listen on {listen_addr}: {e}")))?;
    let local = listener.local_addr().map_err(AppError::internal)?;
    tracing::info!(address = %local, "listening; GraphiQL at http://{local}/");
    axum::serve(listener, http::app(state))
        .with_graceful_shutdown(shutdown_signal(lifecycle.stop.clone()))
        .await
        .map_err(AppError::internal)?;
    lifecycle.stop.cancel();
    for job in jobs {
        let _ = job.await;
    }
    // Websockets are not HTTP requests axum waits for: they were told to
    // close when `stop` was cancelled; give their close frames a moment.
    lifecycle.connections.close();
    if tokio::time::timeout(WEBSOCKET_DRAIN, lifecycle.connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("some websockets did not close in time");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves at SIGTERM or Ctrl-C, and tells the background jobs to stop.
async fn shutdown_signal(stop: CancellationToken) {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
    stop.cancel();
}
