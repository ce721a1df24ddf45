//! The run loop: one batch of a process's messages on a scheduler thread, and process exit.

use crate::behaviour::{CallOutcome, Flow};
use crate::host::ProcCx;
use crate::node::NodeInner;
use crate::process::{CodeSlot, ControlCx, Envelope, InfoMsg, Process, SysMsg};
use relup_module::ExitReason;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

/// Messages one process handles before yielding its thread to others.
const BUDGET: usize = 64;

enum Next {
    Sys(SysMsg),
    User(Envelope),
}

/// How a process leaves after a message.
struct Exit {
    reason: ExitReason,
    run_terminate: bool,
}

fn panic_reason(payload: Box<dyn std::any::Any + Send>) -> ExitReason {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string payload)".into());
    ExitReason::Error(format!("panic: {text}"))
}

/// Runs up to [`BUDGET`] messages of `process`, then yields.
pub(crate) fn run_batch(node: &Arc<NodeInner>, process: Arc<Process>) {
    let mut code = process.code.lock();
    let cx = ProcCx {
        node,
        process: &process,
    };
    for _ in 0..BUDGET {
        let next = {
            let mut mb = process.mailbox.lock();
            if mb.dead {
                return;
            }
            let next = match mb.sys.pop_front() {
                Some(sys) => Some(Next::Sys(sys)),
                None => mb.next_user().map(Next::User),
            };
            if next.is_none() {
                mb.scheduled = false;
            }
            next
        };
        let exit = match next {
            None => return,
            Some(Next::Sys(msg)) => handle_sys(&cx, &mut code, msg),
            Some(Next::User(envelope)) => handle_user(&cx, &mut code, envelope),
        };
        if let Some(exit) = exit {
            leave(&cx, &mut code, exit);
            return;
        }
        if process.is_dead() {
            // Forced out while it was running (a kill after a shutdown timeout).
            code.behaviour = None;
            code.staged_old = None;
            return;
        }
    }
    drop(code);
    node.scheduler.schedule(process);
}

fn leave(cx: &ProcCx<'_>, code: &mut CodeSlot, exit: Exit) {
    // Exiting with a code change staged (migrated, its hop not committed): the process
    // leaves as what it still is until the commit, its old code and state, so the old
    // `terminate` runs, not the new one.
    if let Some(old) = code.staged_old.take() {
        code.behaviour = Some(old);
        cx.process.set_running(code.behaviour.as_deref());
    }
    if exit.run_terminate
        && let Some(behaviour) = code.behaviour.as_mut()
        && let Err(payload) =
            catch_unwind(AssertUnwindSafe(|| behaviour.terminate(cx, &exit.reason)))
    {
        cx.log_warn(&format!("terminate crashed: {}", panic_reason(payload)));
    }
    code.behaviour = None;
    code.staged_old = None;
    cx.node.finish_exit(cx.process, exit.reason);
}

/// Ends a process from outside when it does not exit by itself (a kill after a shutdown
/// timeout): exit signals and monitors fire now; a callback still running finishes on its
/// thread and its code is then dropped without `terminate`.
pub(crate) fn force_exit(node: &Arc<NodeInner>, process: &Arc<Process>, reason: ExitReason) {
    node.finish_exit(process, reason);
    if let Some(mut code) = process.code.try_lock() {
        code.behaviour = None;
        code.staged_old = None;
    }
}

fn handle_sys(cx: &ProcCx<'_>, code: &mut CodeSlot, msg: SysMsg) -> Option<Exit> {
    match msg {
        SysMsg::Kill => Some(Exit {
            reason: ExitReason::Killed,
            run_terminate: false,
        }),
        SysMsg::Exit { from, reason } => {
            let trap = {
                let mut signals = cx.process.signals.lock();
                signals.links.remove(&from);
                signals.trap_exit
            };
            if trap {
                let info = Envelope::Info(InfoMsg::Exit { pid: from, reason });
                // Our own mailbox: we are scheduled, so this only queues.
                let _ = cx.process.push_user(info);
                None
            } else if reason == ExitReason::Normal {
                None
            } else {
                Some(Exit {
                    reason,
                    run_terminate: true,
                })
            }
        }
        SysMsg::Link(from) => {
            cx.process.signals.lock().links.insert(from);
            None
        }
        SysMsg::Unlink(from) => {
            cx.process.signals.lock().links.remove(&from);
            None
        }
        SysMsg::Monitor { from, reference } => {
            cx.process.signals.lock().watchers.insert(reference, from);
            None
        }
        SysMsg::Demonitor { reference } => {
            cx.process.signals.lock().watchers.remove(&reference);
            None
        }
        SysMsg::Control(control) => {
            let mut ccx = ControlCx::new(cx.process, code);
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| control(&mut ccx))) {
                cx.log_warn(&format!(
                    "control request crashed: {}",
                    panic_reason(payload)
                ));
            }
            ccx.stop.map(|reason| Exit {
                reason,
                run_terminate: true,
            })
        }
    }
}

fn handle_user(cx: &ProcCx<'_>, code: &mut CodeSlot, envelope: Envelope) -> Option<Exit> {
    let Some(behaviour) = code.behaviour.as_mut() else {
        return Some(Exit {
            reason: ExitReason::Error("process has no code".into()),
            run_terminate: false,
        });
    };
    match envelope {
        Envelope::Call {
            from,
            payload,
            reply,
        } => {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                behaviour.handle_call(cx, from, payload)
            }))
            .unwrap_or_else(|p| CallOutcome::Stop(panic_reason(p)));
            match outcome {
                CallOutcome::Reply(answer) => {
                    reply.send(Ok(answer));
                    None
                }
                CallOutcome::ReplyThenStop(answer, reason) => {
                    reply.send(Ok(answer));
                    Some(Exit {
                        reason,
                        run_terminate: true,
                    })
                }
                CallOutcome::BadMessage(text) => {
                    reply.send(Err(crate::error::CallError::BadMessage(text)));
                    None
                }
                CallOutcome::Stop(reason) => {
                    // The caller learns the reason when the reply channel closes after exit.
                    leave(
                        cx,
                        code,
                        Exit {
                            reason,
                            run_terminate: true,
                        },
                    );
                    drop(reply);
                    Some(Exit {
                        reason: ExitReason::Normal,
                        run_terminate: false,
                    })
                }
            }
        }
        Envelope::Cast(payload) => {
            let flow = catch_unwind(AssertUnwindSafe(|| behaviour.handle_cast(cx, payload)))
                .unwrap_or_else(|p| Flow::Stop(panic_reason(p)));
            flow_exit(flow)
        }
        Envelope::Info(info) => {
            let flow = catch_unwind(AssertUnwindSafe(|| behaviour.handle_info(cx, info)))
                .unwrap_or_else(|p| Flow::Stop(panic_reason(p)));
            flow_exit(flow)
        }
    }
}

fn flow_exit(flow: Flow) -> Option<Exit> {
    match flow {
        Flow::Continue => None,
        Flow::Stop(reason) => Some(Exit {
            reason,
            run_terminate: true,
        }),
    }
}
