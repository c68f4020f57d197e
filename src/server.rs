//! `ticket-reservation serve`: prepare the database, start the background
//! jobs, serve until SIGTERM or Ctrl-C, then stop cleanly.

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
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
    let listener = std::net::TcpListener::bind(listen_addr)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
        .map_err(|e| AppError::internal(format!("cannot listen on {listen_addr}: {e}")))?;
    let local = listener.local_addr().map_err(AppError::internal)?;
    tracing::info!(address = %local, "listening; GraphiQL at http://{local}/");
    let served = serve_on_front(listener, http::router(state), lifecycle.stop.clone())?;
    let outcome = served.await;
    lifecycle.stop.cancel();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(AppError::internal(error)),
        Err(_) => return Err(AppError::internal("the HTTP thread ended without a word")),
    }
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

/// Serves HTTP on a thread of its own, with a single-threaded runtime, until
/// SIGTERM or Ctrl-C. Its one job is the connections: reading requests,
/// refusing what is past the in-flight bound, answering `/healthz`, and
/// handing GraphQL to the work runtime (`http::router` took it). On one
/// shared runtime a refusal or a health check waited its turn behind every
/// ready request (tail latencies of 200 ms under a rush); here it waits only
/// for this thread, which is never busy for long.
fn serve_on_front(
    listener: std::net::TcpListener,
    router: Router,
    stop: CancellationToken,
) -> AppResult<oneshot::Receiver<Result<(), String>>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::internal(format!("cannot start the HTTP runtime: {e}")))?;
    let (done, served) = oneshot::channel();
    std::thread::Builder::new()
        .name("http".to_owned())
        .spawn(move || {
            let outcome = runtime.block_on(async move {
                let listener = TcpListener::from_std(listener)?;
                axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown_signal(stop))
                    .await
            });
            let _ = done.send(outcome.map_err(|error| error.to_string()));
        })
        .map_err(|e| AppError::internal(format!("cannot start the HTTP thread: {e}")))?;
    Ok(served)
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
