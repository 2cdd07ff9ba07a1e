//! The built-in engine: a pool of worker threads, each with its own copy of the model (and so
//! its own KV cache), fed from one bounded queue. A full queue is refused at once (429), never
//! waited on; a job whose client went away stops at its next token.

use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chipledger_inference::runner::{Backend, ChatTemplate, Model, SamplingConfig, Segment, Stop};
use tokio::sync::mpsc::UnboundedSender;

use crate::Error;

/// What a worker tells the request handler. A streamed job: `Started`, text, then `Done` or
/// `Failed`; a whole one only `Done` (with its text) or `Failed` — one wake-up per request.
#[derive(Debug)]
pub enum Event {
    /// The job left the queue and generation began.
    Started,
    Text(Segment, String),
    Done {
        prompt_tokens: u64,
        completion_tokens: u64,
        stop: Stop,
        /// Since the request arrived (`Job::arrived`): leaving the queue, and the first token.
        queue_ms: u64,
        first_token_ms: u64,
        /// A whole job's (thinking, answer).
        text: Option<(String, String)>,
    },
    /// The request cannot be served (its prompt does not fit the context): a 400.
    Refused(String),
    /// It waited in the queue past its placement's age limit: a 503, nothing generated.
    Expired(String),
    Failed(String),
}

/// What the pool's model is.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub name: String,
    pub files: Vec<chipledger_domain::records::ModelFile>,
    pub backend: String,
}

/// One generation.
#[derive(Debug)]
pub struct Job {
    pub prompt: String,
    pub sampling: SamplingConfig,
    pub events: UnboundedSender<Event>,
    /// When the request arrived (timings count from it).
    pub arrived: Instant,
    /// Text as it comes (`Event::Text`), or all at the end.
    pub stream: bool,
    /// When the placement it was admitted on ages out: a job still queued then is not run.
    pub expires_at: time::OffsetDateTime,
}

/// The pool.
#[derive(Debug, Clone)]
pub struct CandlePool {
    queue: SyncSender<Job>,
    pub template: ChatTemplate,
    pub max_context: usize,
    pub workers: usize,
}

impl CandlePool {
    /// Loads `workers` copies of the model and starts their threads; `queue` jobs may wait.
    pub fn start(
        path: &Path,
        backend: Backend,
        workers: usize,
        queue: usize,
    ) -> Result<(CandlePool, ModelInfo), Error> {
        let workers = workers.max(1);
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let mut first = None;
        for i in 0..workers {
            let model = Model::load(path, backend, &mut |_, _| {})?;
            if first.is_none() {
                first = Some((
                    model.template(),
                    model.max_context,
                    ModelInfo { name: model.name.clone(), files: model.files.clone(), backend: model.backend() },
                ));
            }
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("engine-{i}"))
                .spawn(move || work(model, &rx))
                .map_err(|e| Error::Start(format!("starting an engine thread: {e}")))?;
        }
        let (template, max_context, info) = first.ok_or_else(|| Error::Start("no engine worker".into()))?;
        Ok((CandlePool { queue: tx, template, max_context, workers }, info))
    }

    /// Queues a job, or says the queue is full.
    pub fn try_submit(&self, job: Job) -> Result<(), Job> {
        match self.queue.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(j) | TrySendError::Disconnected(j)) => Err(j),
        }
    }
}

fn work(mut model: Model, rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let Ok(rx) = rx.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        if job.events.is_closed() {
            continue; // the client left while the job waited
        }
        let queue_ms = job.arrived.elapsed().as_millis() as u64;
        if time::OffsetDateTime::now_utc() >= job.expires_at {
            let _ = job.events.send(Event::Expired(
                "the GPUs' attestation aged out while the request waited in the queue; retry once a new one is in \
                 the log"
                    .into(),
            ));
            continue;
        }
        if job.stream {
            let _ = job.events.send(Event::Started);
        }
        match model.encode(&job.prompt) {
            Ok(t) if t.len() >= model.max_context => {
                let _ = job.events.send(Event::Refused(format!(
                    "the messages are {} tokens; this model's context holds {}",
                    t.len(),
                    model.max_context
                )));
                continue;
            }
            Ok(t) if t.is_empty() => {
                let _ = job.events.send(Event::Refused("the messages encode to no tokens".into()));
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                let _ = job.events.send(Event::Failed(e.to_string()));
                continue;
            }
        }
        let events = job.events.clone();
        let mut go_on = || !events.is_closed();
        let mut first_token_ms = None;
        let (mut thinking, mut answer) = (String::new(), String::new());
        let mut on_text = |seg: Segment, text: &str| {
            first_token_ms.get_or_insert_with(|| job.arrived.elapsed().as_millis() as u64);
            if job.stream {
                let _ = job.events.send(Event::Text(seg, text.to_string()));
            } else if seg == Segment::Thinking {
                thinking.push_str(text);
            } else {
                answer.push_str(text);
            }
        };
        let result = model.generate_until(&job.prompt, job.sampling, &mut go_on, &mut on_text);
        let _ = job.events.send(match result {
            Ok(g) => Event::Done {
                prompt_tokens: g.prompt_tokens as u64,
                completion_tokens: g.tokens.len() as u64,
                stop: g.stop,
                queue_ms,
                first_token_ms: first_token_ms.unwrap_or_else(|| job.arrived.elapsed().as_millis() as u64),
                text: (!job.stream).then_some((thinking, answer)),
            },
            Err(e) => Event::Failed(e.to_string()),
        });
    }
}
