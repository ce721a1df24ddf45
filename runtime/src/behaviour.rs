//! What a process runs: a module instance (dynamic or native), or one of the runtime's own
//! behaviours (the supervisor). The run loop only sees the [`Behaviour`] trait.

use crate::code_server::LoadedModule;
use crate::host::{self, ProcCx};
use crate::ports::TcpEvent;
use crate::process::{InfoMsg, Payload};
use relup_module::abi::{
    self, HostApi, InfoFfi, Instance, STATUS_BAD_MESSAGE, STATUS_OK, STATUS_STOP, Sink, Slice,
};
use relup_module::{Direction, ExitReason, Pid};
use std::sync::Arc;

/// How a call ended.
pub(crate) enum CallOutcome {
    /// Reply and carry on.
    Reply(Payload),
    /// Reply, then stop with the reason.
    ReplyThenStop(Payload, ExitReason),
    /// Crash without a reply.
    Stop(ExitReason),
    /// The request was not understood; the caller gets an error, the process carries on.
    BadMessage(String),
}

/// Whether a process goes on after a callback.
pub(crate) enum Flow {
    Continue,
    Stop(ExitReason),
}

/// Whether a process is a worker or a supervisor (for which_children and count_children).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ProcessKind {
    /// A server running module code.
    Worker,
    /// A supervisor.
    Supervisor,
}

/// The callbacks a process's code answers. Implemented by module instances and supervisors.
pub(crate) trait Behaviour: Send {
    fn handle_call(&mut self, cx: &ProcCx<'_>, from: Option<Pid>, payload: Payload) -> CallOutcome;
    fn handle_cast(&mut self, cx: &ProcCx<'_>, payload: Payload) -> Flow;
    fn handle_info(&mut self, cx: &ProcCx<'_>, info: InfoMsg) -> Flow;
    fn terminate(&mut self, cx: &ProcCx<'_>, reason: &ExitReason);
    fn kind(&self) -> ProcessKind;
    /// The module version this process runs (None for runtime behaviours).
    fn module(&self) -> Option<&Arc<LoadedModule>>;
    /// For module instances: the instance, to export or migrate its state.
    fn as_module(&mut self) -> Option<&mut ModuleInstance> {
        None
    }
}

/// A live instance of a module's server: the module version and its opaque state.
pub struct ModuleInstance {
    module: Arc<LoadedModule>,
    instance: Instance,
}

// SAFETY: an instance is only used by the one process that owns it, one thread at a time, and
// `Server` requires `Send`.
unsafe impl Send for ModuleInstance {}

impl Drop for ModuleInstance {
    fn drop(&mut self) {
        // SAFETY: the instance came from this module's init/code_change and is dropped once;
        // drop_instance catches panics.
        unsafe { (self.module.descriptor().drop_instance)(self.instance) }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Turns an error status into an exit reason (panics keep their message).
fn crash_reason(what: &str, module: &str, out: &[u8]) -> ExitReason {
    ExitReason::Error(format!("{module}:{what}: {}", text(out)))
}

impl ModuleInstance {
    /// Runs the module's `init` in the context of the new process.
    pub(crate) fn init(
        module: Arc<LoadedModule>,
        cx: &ProcCx<'_>,
        args: &[u8],
    ) -> Result<ModuleInstance, ExitReason> {
        let api = host::api(cx);
        let mut out = Vec::new();
        let mut instance: Instance = std::ptr::null_mut();
        // SAFETY: valid pointers for the call; the descriptor was validated at load.
        let status = unsafe {
            (module.descriptor().init)(
                &api,
                Slice::new(args),
                &mut instance,
                &Sink::for_vec(&mut out),
            )
        };
        if status == STATUS_OK && !instance.is_null() {
            Ok(ModuleInstance { module, instance })
        } else if status == STATUS_OK {
            Err(ExitReason::Error(format!(
                "{}:init returned no state",
                module.name()
            )))
        } else {
            Err(crash_reason("init", module.name(), &out))
        }
    }

    /// Builds an instance of `module` from another version's exported state.
    pub(crate) fn code_change(
        module: Arc<LoadedModule>,
        from_vsn: &str,
        direction: Direction,
        old_state: &[u8],
        extra: &[u8],
    ) -> Result<ModuleInstance, String> {
        let dir = match direction {
            Direction::Up => abi::direction::UP,
            Direction::Down => abi::direction::DOWN,
        };
        Self::from_state(module, from_vsn, dir, old_state, extra)
    }

    /// Builds an instance of `module` from a state this very version exported (a snapshot
    /// restore): the module decodes it as it is, its `code_change` is not called.
    pub(crate) fn restore(
        module: Arc<LoadedModule>,
        state: &[u8],
    ) -> Result<ModuleInstance, String> {
        let vsn = module.version().to_string();
        Self::from_state(module, &vsn, abi::direction::RESTORE, state, &[])
    }

    fn from_state(
        module: Arc<LoadedModule>,
        from_vsn: &str,
        dir: u32,
        old_state: &[u8],
        extra: &[u8],
    ) -> Result<ModuleInstance, String> {
        let mut out = Vec::new();
        let mut instance: Instance = std::ptr::null_mut();
        // SAFETY: valid pointers for the call.
        let status = unsafe {
            (module.descriptor().code_change)(
                Slice::new(from_vsn.as_bytes()),
                dir,
                Slice::new(old_state),
                Slice::new(extra),
                &mut instance,
                &Sink::for_vec(&mut out),
            )
        };
        if status == STATUS_OK && !instance.is_null() {
            Ok(ModuleInstance { module, instance })
        } else if status == STATUS_OK {
            Err("code_change returned no state".into())
        } else {
            Err(text(&out))
        }
    }

    /// Calls an exported function of `module` (appup `apply`) outside any running process:
    /// the host context is a process of its own that no scheduler runs and that exits when the
    /// call returns ([`crate::Node::apply`]), so it can send to and call others.
    pub(crate) fn apply(
        module: &LoadedModule,
        cx: &ProcCx<'_>,
        function: &str,
        args: &[u8],
    ) -> Result<Vec<u8>, String> {
        let api = host::api(cx);
        let mut out = Vec::new();
        // SAFETY: valid pointers for the call; the descriptor was validated at load.
        let status = unsafe {
            (module.descriptor().apply)(
                &api,
                Slice::new(function.as_bytes()),
                Slice::new(args),
                &Sink::for_vec(&mut out),
            )
        };
        if status == STATUS_OK {
            Ok(out)
        } else {
            Err(text(&out))
        }
    }

    /// The state, encoded, for migration or inspection.
    pub(crate) fn export_state(&mut self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        // SAFETY: our instance; valid sink.
        let status = unsafe {
            (self.module.descriptor().export_state)(self.instance, &Sink::for_vec(&mut out))
        };
        if status == STATUS_OK {
            Ok(out)
        } else {
            Err(text(&out))
        }
    }

    /// Runs the module's health check.
    pub(crate) fn health(&mut self) -> Result<(), String> {
        let mut out = Vec::new();
        // SAFETY: our instance; valid sink.
        let status =
            unsafe { (self.module.descriptor().health)(self.instance, &Sink::for_vec(&mut out)) };
        if status == STATUS_OK {
            Ok(())
        } else {
            Err(text(&out))
        }
    }

    /// Delivers an encoded `ConfigChange`.
    pub(crate) fn config_change(&mut self, cx: &ProcCx<'_>, change: &[u8]) -> Flow {
        let api = host::api(cx);
        let mut out = Vec::new();
        // SAFETY: our instance; valid pointers for the call.
        let status = unsafe {
            (self.module.descriptor().config_change)(
                self.instance,
                &api,
                Slice::new(change),
                &Sink::for_vec(&mut out),
            )
        };
        self.flow(status, "config_change", &out)
    }

    /// The module version this instance belongs to.
    pub(crate) fn loaded(&self) -> &Arc<LoadedModule> {
        &self.module
    }

    fn flow(&self, status: i32, what: &str, out: &[u8]) -> Flow {
        match status {
            STATUS_OK => Flow::Continue,
            STATUS_STOP => Flow::Stop(ExitReason::from_text(&text(out))),
            _ => Flow::Stop(crash_reason(what, self.module.name(), out)),
        }
    }

    /// Hands a port event to the module's `handle_info`.
    fn tcp_info(&mut self, api: &HostApi, event: &TcpEvent) -> (i32, Vec<u8>) {
        let (kind, reference, port, payload) = match event {
            TcpEvent::Accepted {
                listener,
                conn,
                peer,
            } => (
                abi::info_kind::TCP_ACCEPTED,
                listener.0,
                conn.0,
                peer.to_string().into_bytes(),
            ),
            TcpEvent::Connected { conn, peer } => (
                abi::info_kind::TCP_CONNECTED,
                0,
                conn.0,
                peer.to_string().into_bytes(),
            ),
            TcpEvent::Data { conn, bytes, .. } => {
                let info = InfoFfi {
                    kind: abi::info_kind::TCP_DATA,
                    pid: 0,
                    reference: 0,
                    port: conn.0,
                    payload: Slice::new(bytes),
                };
                return self.info(api, &info);
            }
            TcpEvent::Closed { port, reason, .. } => (
                abi::info_kind::TCP_CLOSED,
                0,
                port.0,
                reason.to_text().into_bytes(),
            ),
        };
        let info = InfoFfi {
            kind,
            pid: 0,
            reference,
            port,
            payload: Slice::new(&payload),
        };
        self.info(api, &info)
    }

    fn info(&mut self, api: &HostApi, info: &InfoFfi) -> (i32, Vec<u8>) {
        let mut out = Vec::new();
        // SAFETY: our instance; valid pointers for the call.
        let status = unsafe {
            (self.module.descriptor().handle_info)(
                self.instance,
                api,
                info,
                &Sink::for_vec(&mut out),
            )
        };
        (status, out)
    }
}

impl Behaviour for ModuleInstance {
    fn handle_call(
        &mut self,
        cx: &ProcCx<'_>,
        _from: Option<Pid>,
        payload: Payload,
    ) -> CallOutcome {
        let Payload::Bytes(msg) = payload else {
            return CallOutcome::BadMessage("a module takes encoded requests only".into());
        };
        let api = host::api(cx);
        let (mut reply, mut reason) = (Vec::new(), Vec::new());
        // SAFETY: our instance; valid pointers for the call.
        let status = unsafe {
            (self.module.descriptor().handle_call)(
                self.instance,
                &api,
                Slice::new(&msg),
                &Sink::for_vec(&mut reply),
                &Sink::for_vec(&mut reason),
            )
        };
        match status {
            STATUS_OK => CallOutcome::Reply(Payload::Bytes(reply)),
            STATUS_STOP => CallOutcome::ReplyThenStop(
                Payload::Bytes(reply),
                ExitReason::from_text(&text(&reason)),
            ),
            STATUS_BAD_MESSAGE => CallOutcome::BadMessage(text(&reason)),
            _ => CallOutcome::Stop(crash_reason("handle_call", self.module.name(), &reason)),
        }
    }

    fn handle_cast(&mut self, cx: &ProcCx<'_>, payload: Payload) -> Flow {
        let Payload::Bytes(msg) = payload else {
            return Flow::Continue;
        };
        let api = host::api(cx);
        let mut out = Vec::new();
        // SAFETY: our instance; valid pointers for the call.
        let status = unsafe {
            (self.module.descriptor().handle_cast)(
                self.instance,
                &api,
                Slice::new(&msg),
                &Sink::for_vec(&mut out),
            )
        };
        if status == STATUS_BAD_MESSAGE {
            cx.log_warn(&format!("dropped a cast it cannot decode: {}", text(&out)));
            return Flow::Continue;
        }
        self.flow(status, "handle_cast", &out)
    }

    fn handle_info(&mut self, cx: &ProcCx<'_>, info: InfoMsg) -> Flow {
        let api = host::api(cx);
        let (status, out) = match info {
            InfoMsg::Message(Payload::Bytes(msg)) => self.info(
                &api,
                &InfoFfi {
                    kind: abi::info_kind::MESSAGE,
                    pid: 0,
                    reference: 0,
                    port: 0,
                    payload: Slice::new(&msg),
                },
            ),
            InfoMsg::Message(Payload::Internal(_)) => return Flow::Continue,
            InfoMsg::Down {
                reference,
                pid,
                reason,
            } => {
                let reason = reason.to_text();
                self.info(
                    &api,
                    &InfoFfi {
                        kind: abi::info_kind::DOWN,
                        pid: pid.0,
                        reference,
                        port: 0,
                        payload: Slice::new(reason.as_bytes()),
                    },
                )
            }
            InfoMsg::Exit { pid, reason } => {
                let reason = reason.to_text();
                self.info(
                    &api,
                    &InfoFfi {
                        kind: abi::info_kind::EXIT,
                        pid: pid.0,
                        reference: 0,
                        port: 0,
                        payload: Slice::new(reason.as_bytes()),
                    },
                )
            }
            // The event (with its credit or close guard) is dropped after the callback: that
            // is when its bytes count as handled.
            InfoMsg::Tcp(event) => self.tcp_info(&api, &event),
        };
        if status == STATUS_BAD_MESSAGE {
            cx.log_warn(&format!(
                "dropped a message it cannot decode: {}",
                text(&out)
            ));
            return Flow::Continue;
        }
        self.flow(status, "handle_info", &out)
    }

    fn terminate(&mut self, cx: &ProcCx<'_>, reason: &ExitReason) {
        let api = host::api(cx);
        let reason = reason.to_text();
        let mut out = Vec::new();
        // SAFETY: our instance; valid pointers for the call.
        let status = unsafe {
            (self.module.descriptor().terminate)(
                self.instance,
                &api,
                Slice::new(reason.as_bytes()),
                &Sink::for_vec(&mut out),
            )
        };
        if status != STATUS_OK {
            cx.log_warn(&format!("terminate failed: {}", text(&out)));
        }
    }

    fn kind(&self) -> ProcessKind {
        ProcessKind::Worker
    }

    fn module(&self) -> Option<&Arc<LoadedModule>> {
        Some(&self.module)
    }

    fn as_module(&mut self) -> Option<&mut ModuleInstance> {
        Some(self)
    }
}
