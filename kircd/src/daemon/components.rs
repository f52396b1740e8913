//! The daemon's running parts, stopped in the reverse order of starting.

use futures::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One running subsystem: its tasks, the token that stops them, and what
/// runs once they ended (flushing the outbox, closing the pool).
pub struct Component {
    name: &'static str,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    finally: Option<BoxFuture<'static, ()>>,
}

impl std::fmt::Debug for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Component")
            .field("name", &self.name)
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl Component {
    /// A component whose tasks stop when `cancel` fires.
    pub fn new(name: &'static str, cancel: CancellationToken) -> Self {
        Component {
            name,
            cancel,
            tasks: Vec::new(),
            finally: None,
        }
    }

    pub fn task(mut self, task: JoinHandle<()>) -> Self {
        self.tasks.push(task);
        self
    }

    /// Runs `finally` after the tasks ended.
    pub fn finally(mut self, finally: BoxFuture<'static, ()>) -> Self {
        self.finally = Some(finally);
        self
    }

    async fn stop(self) {
        self.cancel.cancel();
        for task in self.tasks {
            if let Err(err) = task.await {
                tracing::error!(component = self.name, error = %err, "a task failed");
            }
        }
        if let Some(finally) = self.finally {
            finally.await;
        }
        tracing::debug!(component = self.name, "stopped");
    }
}

/// The components in the order they started.
#[derive(Debug, Default)]
pub struct Components(Vec<Component>);

impl Components {
    pub fn start(&mut self, component: Component) {
        self.0.push(component);
    }

    /// Stops every component, the last started first: the API before the
    /// subsystems it calls, the workers before the backends they use.
    pub async fn stop(mut self) {
        while let Some(component) = self.0.pop() {
            component.stop().await;
        }
    }
}
