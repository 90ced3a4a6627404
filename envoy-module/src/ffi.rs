//! The C ABI of Envoy 1.40's dynamic modules (ABI `v0.2.0`), and the only `unsafe` code of
//! the module: Envoy's two callbacks this filter uses, resolved by name in the Envoy process
//! when the module loads, behind a safe [`RequestHeaders`] and [`respond`]; and the hooks
//! Envoy calls, each behind `catch_unwind`, so that a panic refuses the request (500) or the
//! config instead of unwinding into Envoy.
//!
//! Signatures, as in Envoy's `source/extensions/dynamic_modules/abi/abi.h` at v1.40.0 and
//! checked by the tests through the real Envoy (`tests/envoy_module.rs`):
//! - buffers are `{ptr, length}` structs passed by value;
//! - `envoy_dynamic_module_callback_http_get_header(filter_envoy_ptr, header_type, key,
//!   *result_buffer, index, *optional_size) -> bool` (header type 0: request headers;
//!   `optional_size` receives how many values the header has);
//! - `envoy_dynamic_module_callback_http_send_response(filter_envoy_ptr, status,
//!   headers_vector, headers_vector_size, body, details)`.
#![allow(unsafe_code)]

use crate::claims::{Header, RequestHeaders};
use crate::filter::{Refusal, RevocationFilter, Verdict, internal_error};
use std::ffi::{c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

/// The ABI this module was built against: Envoy 1.40's.
pub const ABI_VERSION: &std::ffi::CStr = c"v0.2.0";

/// Memory owned by Envoy, valid during the hook that received it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyBuffer {
    ptr: *const u8,
    length: usize,
}

/// Memory owned by the module, lent to Envoy for one call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModuleBuffer {
    ptr: *const u8,
    length: usize,
}

impl ModuleBuffer {
    fn of(bytes: &[u8]) -> Self {
        Self {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }
}

/// One response header lent to Envoy.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct ModuleHeader {
    key_ptr: *const u8,
    key_length: usize,
    value_ptr: *const u8,
    value_length: usize,
}

/// `envoy_dynamic_module_type_http_header_type_RequestHeader`.
const REQUEST_HEADER: i32 = 0;
/// `envoy_dynamic_module_type_on_http_filter_request_headers_status_Continue`.
const CONTINUE: i32 = 0;
/// `…_StopIteration`: the filter answered the request.
const STOP_ITERATION: i32 = 1;

type GetHeader = unsafe extern "C" fn(
    *mut c_void,
    i32,
    ModuleBuffer,
    *mut EnvoyBuffer,
    usize,
    *mut usize,
) -> bool;
type SendResponse =
    unsafe extern "C" fn(*mut c_void, u32, *const ModuleHeader, usize, ModuleBuffer, ModuleBuffer);

/// Envoy's callbacks this module calls.
#[derive(Clone, Copy)]
pub(crate) struct Callbacks {
    get_header: GetHeader,
    send_response: SendResponse,
}

static CALLBACKS: OnceLock<Option<Callbacks>> = OnceLock::new();

fn callbacks() -> Option<&'static Callbacks> {
    CALLBACKS.get_or_init(resolve).as_ref()
}

/// Looks Envoy's callbacks up in the process (Envoy exports them); `None` outside Envoy.
#[cfg(not(test))]
fn resolve() -> Option<Callbacks> {
    fn symbol(name: &std::ffi::CStr) -> Option<*mut c_void> {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads the process's
        // symbol tables.
        let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        (!found.is_null()).then_some(found)
    }
    let get_header = symbol(c"envoy_dynamic_module_callback_http_get_header")?;
    let send_response = symbol(c"envoy_dynamic_module_callback_http_send_response")?;
    // SAFETY: these symbols are Envoy 1.40's functions with exactly these signatures (see
    // the module docs); a non-null dlsym result is the function's address.
    unsafe {
        Some(Callbacks {
            get_header: std::mem::transmute::<*mut c_void, GetHeader>(get_header),
            send_response: std::mem::transmute::<*mut c_void, SendResponse>(send_response),
        })
    }
}

#[cfg(test)]
fn resolve() -> Option<Callbacks> {
    Some(tests::fake_callbacks())
}

/// The request headers of one filter, read through Envoy during a hook.
struct EnvoyHeaders {
    filter: *mut c_void,
    get_header: GetHeader,
}

impl RequestHeaders for EnvoyHeaders {
    fn get(&self, name: &str) -> Header<'_> {
        let mut value = EnvoyBuffer {
            ptr: std::ptr::null(),
            length: 0,
        };
        let mut count = 0_usize;
        // SAFETY: `filter` is the filter pointer Envoy passed to the running hook; the key
        // outlives the call; `value` and `count` are writable. Envoy writes a view of its
        // own header value, valid until the hook returns, which bounds `'_` (`self` lives
        // only inside the hook).
        let found = unsafe {
            (self.get_header)(
                self.filter,
                REQUEST_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                &mut value,
                0,
                &mut count,
            )
        };
        match count {
            _ if !found => Header::Absent,
            0 => Header::Absent,
            1 if value.ptr.is_null() => Header::One(&[]),
            // SAFETY: Envoy returned `length` readable bytes at `ptr`, valid during the hook.
            1 => Header::One(unsafe { std::slice::from_raw_parts(value.ptr, value.length) }),
            _ => Header::Repeated,
        }
    }
}

/// Answers the request of `filter` with `refusal` (Envoy copies everything lent).
fn respond(callbacks: &Callbacks, filter: *mut c_void, refusal: &Refusal) {
    let headers: Vec<ModuleHeader> = refusal
        .headers
        .iter()
        .map(|(name, value)| ModuleHeader {
            key_ptr: name.as_ptr(),
            key_length: name.len(),
            value_ptr: value.as_ptr(),
            value_length: value.len(),
        })
        .collect();
    // SAFETY: `filter` is the pointer of the running hook; the headers, body and details
    // outlive the call, and Envoy copies them before returning.
    unsafe {
        (callbacks.send_response)(
            filter,
            refusal.status,
            headers.as_ptr(),
            headers.len(),
            ModuleBuffer::of(refusal.body.as_bytes()),
            ModuleBuffer::of(refusal.details.as_bytes()),
        );
    }
}

/// Runs `hook`, turning a panic into `on_panic`.
fn guarded<T>(on_panic: T, hook: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(hook)).unwrap_or(on_panic)
}

/// The bytes of an Envoy buffer (empty for a null pointer).
///
/// # Safety
/// `buffer` must describe readable memory valid for `'a`.
unsafe fn bytes<'a>(buffer: EnvoyBuffer) -> &'a [u8] {
    if buffer.ptr.is_null() {
        return &[];
    }
    // SAFETY: per the function's contract.
    unsafe { std::slice::from_raw_parts(buffer.ptr, buffer.length) }
}

/// Called once when Envoy loads the module: the ABI version, or null (Envoy then refuses
/// the module) when Envoy's callbacks cannot be found.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    guarded(std::ptr::null(), || match callbacks() {
        Some(_) => ABI_VERSION.as_ptr(),
        None => std::ptr::null(),
    })
}

/// Creates the filter config from the JSON in `filter_config` and starts its feed thread;
/// null (Envoy rejects the config) when the config is refused.
///
/// # Safety
/// `name` and `config` must be readable for the call, as Envoy guarantees.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _config_envoy_ptr: *mut c_void,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    guarded(std::ptr::null(), || {
        // SAFETY: Envoy lends the config for this call.
        let config = unsafe { bytes(config) };
        match RevocationFilter::new(config) {
            Ok(filter) => Box::into_raw(Box::new(filter)).cast_const().cast(),
            Err(error) => {
                eprintln!("jwt_revoker_envoy: the filter config is refused: {error}");
                std::ptr::null()
            }
        }
    })
}

/// Destroys a filter config made by `…_config_new`, stopping its feed thread.
///
/// # Safety
/// `config` must come from `envoy_dynamic_module_on_http_filter_config_new`, once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *mut c_void) {
    guarded((), || {
        if !config.is_null() {
            // SAFETY: per the contract, a box made by config_new and not freed yet.
            drop(unsafe { Box::from_raw(config.cast::<RevocationFilter>()) });
        }
    });
}

/// A filter for one stream: the config itself (Envoy keeps the config alive while any of
/// its filters lives), so a request allocates nothing.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *mut c_void,
    _filter_envoy_ptr: *mut c_void,
) -> *const c_void {
    config.cast_const()
}

/// Nothing to free: the filter is its config.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(_filter: *mut c_void) {}

/// The check: the request's claims looked up; continue, or answer with the refusal. A
/// panic answers 500.
///
/// # Safety
/// `filter_envoy_ptr` must be the running stream's filter and `filter` a config from
/// `…_config_new`, as Envoy guarantees.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy_ptr: *mut c_void,
    filter: *mut c_void,
    _end_of_stream: bool,
) -> i32 {
    on_request(filter_envoy_ptr, |headers| {
        // SAFETY: per the contract, a live config.
        let filter = unsafe { &*filter.cast_const().cast::<RevocationFilter>() };
        filter.decide(headers, jwt_revoker::clock::unix_now())
    })
}

/// Answers the request of `filter_envoy_ptr` per `decide`: continue, or send its refusal;
/// a panic in `decide` sends a 500 instead.
fn on_request(filter_envoy_ptr: *mut c_void, decide: impl FnOnce(&EnvoyHeaders) -> Verdict) -> i32 {
    let Some(callbacks) = callbacks() else {
        // on_program_init refused to load without them; never reached.
        return STOP_ITERATION;
    };
    let headers = EnvoyHeaders {
        filter: filter_envoy_ptr,
        get_header: callbacks.get_header,
    };
    let refusal = match catch_unwind(AssertUnwindSafe(|| decide(&headers))) {
        Ok(Verdict::Continue) => return CONTINUE,
        Ok(Verdict::Refuse(refusal)) => refusal,
        Err(_) => internal_error(),
    };
    guarded((), || respond(callbacks, filter_envoy_ptr, &refusal));
    STOP_ITERATION
}

/// Hooks this filter has no use for; Envoy 1.40 requires them all. Each returns Continue
/// (0) where a status is expected.
macro_rules! continue_hooks {
    ($($name:ident),* $(,)?) => {$(
        /// Not used: continue.
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(_filter_envoy_ptr: *mut c_void, _filter: *mut c_void, _end_of_stream: bool) -> i32 {
            CONTINUE
        }
    )*};
}

macro_rules! ignored_hooks {
    ($($name:ident),* $(,)?) => {$(
        /// Not used.
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(_filter_envoy_ptr: *mut c_void, _filter: *mut c_void) {}
    )*};
}

continue_hooks!(
    envoy_dynamic_module_on_http_filter_request_body,
    envoy_dynamic_module_on_http_filter_request_trailers,
    envoy_dynamic_module_on_http_filter_response_headers,
    envoy_dynamic_module_on_http_filter_response_body,
    envoy_dynamic_module_on_http_filter_response_trailers,
);

ignored_hooks!(
    envoy_dynamic_module_on_http_filter_stream_complete,
    envoy_dynamic_module_on_http_filter_http_callout_done,
    envoy_dynamic_module_on_http_filter_http_stream_headers,
    envoy_dynamic_module_on_http_filter_http_stream_data,
    envoy_dynamic_module_on_http_filter_http_stream_trailers,
    envoy_dynamic_module_on_http_filter_http_stream_complete,
    envoy_dynamic_module_on_http_filter_http_stream_reset,
    envoy_dynamic_module_on_http_filter_scheduled,
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark,
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark,
);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A response sent through the fake `send_response`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct Sent {
        status: u32,
        headers: Vec<(String, String)>,
        body: String,
        details: String,
    }

    thread_local! {
        static REQUEST: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
        static SENT: RefCell<Vec<Sent>> = const { RefCell::new(Vec::new()) };
    }

    // SAFETY (of the fakes): called only by the code above with valid buffers.
    unsafe extern "C" fn fake_get_header(
        _filter: *mut c_void,
        header_type: i32,
        key: ModuleBuffer,
        out: *mut EnvoyBuffer,
        index: usize,
        count: *mut usize,
    ) -> bool {
        assert_eq!(header_type, REQUEST_HEADER);
        // SAFETY: the key is a live &str.
        let key = unsafe { std::slice::from_raw_parts(key.ptr, key.length) };
        REQUEST.with_borrow(|request| {
            let values: Vec<&(String, String)> = request
                .iter()
                .filter(|(k, _)| k.as_bytes() == key)
                .collect();
            if !count.is_null() {
                // SAFETY: writable per the ABI.
                unsafe { *count = values.len() };
            }
            let Some((_, value)) = values.get(index) else {
                return false;
            };
            // SAFETY: writable per the ABI; the value lives in the thread-local until the
            // test changes the request, after the hook returned.
            unsafe {
                *out = EnvoyBuffer {
                    ptr: value.as_ptr(),
                    length: value.len(),
                };
            }
            true
        })
    }

    unsafe extern "C" fn fake_send_response(
        _filter: *mut c_void,
        status: u32,
        headers: *const ModuleHeader,
        count: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    ) {
        let text = |ptr: *const u8, len: usize| {
            // SAFETY: lent by `respond` for this call.
            String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(ptr, len) }).into_owned()
        };
        // SAFETY: `count` headers lent by `respond`.
        let headers = unsafe { std::slice::from_raw_parts(headers, count) };
        let sent = Sent {
            status,
            headers: headers
                .iter()
                .map(|h| {
                    (
                        text(h.key_ptr, h.key_length),
                        text(h.value_ptr, h.value_length),
                    )
                })
                .collect(),
            body: text(body.ptr, body.length),
            details: text(details.ptr, details.length),
        };
        SENT.with_borrow_mut(|all| all.push(sent));
    }

    pub(crate) fn fake_callbacks() -> Callbacks {
        Callbacks {
            get_header: fake_get_header,
            send_response: fake_send_response,
        }
    }

    fn buffer(bytes: &[u8]) -> EnvoyBuffer {
        EnvoyBuffer {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }

    /// A config whose feed never answers (port 1), so its replica never syncs.
    fn config() -> *const c_void {
        let json = br#"{"feed": "127.0.0.1:1", "feed_token": "0123456789abcdef", "realm": "mesh"}"#;
        // SAFETY: live buffers for the call.
        unsafe {
            envoy_dynamic_module_on_http_filter_config_new(
                std::ptr::null_mut(),
                buffer(b"revocation_check"),
                buffer(json),
            )
        }
    }

    fn request(config: *const c_void, headers: &[(&str, &str)]) -> (i32, Vec<Sent>) {
        REQUEST.with_borrow_mut(|request| {
            *request = headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
        });
        SENT.with_borrow_mut(Vec::clear);
        let filter =
            envoy_dynamic_module_on_http_filter_new(config.cast_mut(), std::ptr::null_mut());
        // SAFETY: a config from config_new; the fake callbacks ignore the envoy pointer.
        let status = unsafe {
            envoy_dynamic_module_on_http_filter_request_headers(
                std::ptr::null_mut(),
                filter.cast_mut(),
                true,
            )
        };
        envoy_dynamic_module_on_http_filter_destroy(filter.cast_mut());
        (status, SENT.with_borrow(Clone::clone))
    }

    #[test]
    fn program_init_answers_the_abi_version() {
        let version = envoy_dynamic_module_on_program_init();
        assert!(!version.is_null());
        // SAFETY: a pointer to ABI_VERSION.
        let version = unsafe { std::ffi::CStr::from_ptr(version) };
        assert_eq!(version.to_str(), Ok("v0.2.0"));
    }

    #[test]
    fn a_refused_config_is_null_and_a_good_one_starts_and_stops() {
        // SAFETY: live buffers for the call.
        let refused = unsafe {
            envoy_dynamic_module_on_http_filter_config_new(
                std::ptr::null_mut(),
                buffer(b"x"),
                buffer(b"{\"feed\": 1}"),
            )
        };
        assert!(refused.is_null());
        let config = config();
        assert!(!config.is_null());
        // SAFETY: made by config_new just above, destroyed once; this joins the feed thread.
        unsafe { envoy_dynamic_module_on_http_filter_config_destroy(config.cast_mut()) };
    }

    #[test]
    fn requests_are_answered_through_send_response_and_stop_iteration() {
        let config = config();
        let (status, sent) = request(config, &[]);
        assert_eq!(status, STOP_ITERATION);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].status, 401);
        assert!(sent[0].headers.contains(&(
            "www-authenticate".to_owned(),
            "Bearer realm=\"mesh\"".to_owned()
        )));
        assert_eq!(sent[0].details, "jwt_revoker_no_token");
        // Claims present, but the replica never synced: 503, fail closed.
        let payload =
            crate::claims::tests::encoded(&crate::claims::tests::claims(serde_json::json!({})));
        let (status, sent) = request(config, &[("x-jwt-payload", &payload)]);
        assert_eq!((status, sent[0].status), (STOP_ITERATION, 503));
        // The payload header twice: refused before any lookup.
        let (_, sent) = request(
            config,
            &[("x-jwt-payload", &payload), ("x-jwt-payload", &payload)],
        );
        assert_eq!(sent[0].details, "jwt_revoker_repeated_claim");
        // SAFETY: made by config_new above, destroyed once.
        unsafe { envoy_dynamic_module_on_http_filter_config_destroy(config.cast_mut()) };
    }

    #[test]
    fn a_panic_while_deciding_refuses_with_500_instead_of_unwinding_into_envoy() {
        SENT.with_borrow_mut(Vec::clear);
        let status = on_request(std::ptr::null_mut(), |_| panic!("a bug in the check"));
        assert_eq!(status, STOP_ITERATION);
        let sent = SENT.with_borrow(Clone::clone);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].status, 500);
        assert_eq!(sent[0].details, crate::filter::INTERNAL_ERROR_DETAILS);
        assert_eq!(guarded(7, || panic!("a bug")), 7);
    }

    #[test]
    fn unused_hooks_continue() {
        let null = std::ptr::null_mut();
        assert_eq!(
            envoy_dynamic_module_on_http_filter_request_body(null, null, false),
            CONTINUE
        );
        assert_eq!(
            envoy_dynamic_module_on_http_filter_response_headers(null, null, true),
            CONTINUE
        );
    }
}
