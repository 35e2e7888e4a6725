//! The captures of a real minimega 3.1.0 daemon in `fixtures/minimega/`:
//! `(name, what the client sent, what the daemon sent)`. Shared by the
//! machine's tests (`proto/tests/minimega.rs`) and the fake daemon's
//! (`io-std/tests/minimega.rs`).
#![allow(dead_code)]

macro_rules! capture {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!("../../../fixtures/minimega/", $name, ".c2s")) as &[u8],
            include_bytes!(concat!("../../../fixtures/minimega/", $name, ".s2c")) as &[u8],
        )
    };
}

pub type Capture = (&'static str, &'static [u8], &'static [u8]);

pub const ALL: &[Capture] = &[
    capture!("goclient_attach.c1"),
    capture!("goclient_attach_tab.c1"),
    capture!("goclient_e_comment.c1"),
    capture!("goclient_e_error.c1"),
    capture!("goclient_e_namespace.c1"),
    capture!("goclient_e_quoted.c1"),
    capture!("goclient_e_read.c1"),
    capture!("goclient_e_version.c1"),
    capture!("goclient_e_vm_info.c1"),
    capture!("pybind_connect_version.c1"),
    capture!("pybind_error_noraise.c1"),
    capture!("pybind_error_raise.c1"),
    capture!("pybind_help_escaping.c1"),
    capture!("pybind_host.c1"),
    capture!("pybind_json_mode.c1"),
    capture!("pybind_multi_read.c1"),
    capture!("pybind_namespace.c1"),
    capture!("pybind_namespace.c2"),
    capture!("pybind_null_resp.c1"),
    capture!("pybind_stream_error_desync.c1"),
    capture!("pybind_vm_info.c1"),
    capture!("raw_bare_string"),
    capture!("raw_both_command_and_suggest"),
    capture!("raw_empty_object"),
    capture!("raw_errors"),
    capture!("raw_extra_fields"),
    capture!("raw_half_close"),
    capture!("raw_json_null"),
    capture!("raw_lowercase_field"),
    capture!("raw_malformed_json"),
    capture!("raw_multi_read"),
    capture!("raw_multi_read_stop_on_invalid"),
    capture!("raw_namespace_prefix"),
    capture!("raw_namespace_switch_global.A"),
    capture!("raw_namespace_switch_global.B"),
    capture!("raw_newline_terminated"),
    capture!("raw_no_newline"),
    capture!("raw_original_field"),
    capture!("raw_output_modes"),
    capture!("raw_pipelined_one_write"),
    capture!("raw_pipelined_while_streaming"),
    capture!("raw_plumb_pipe.cmd"),
    capture!("raw_plumb_pipe.reader"),
    capture!("raw_quit"),
    capture!("raw_quit_delay"),
    capture!("raw_quoting"),
    capture!("raw_split_request"),
    capture!("raw_suggest"),
    capture!("raw_trailing_garbage"),
    capture!("raw_type_mismatch"),
    capture!("raw_utf8"),
    capture!("raw_various"),
    capture!("raw_whitespace_command"),
];

/// The capture called `name`.
pub fn capture(name: &str) -> Capture {
    *ALL.iter().find(|c| c.0 == name).unwrap_or_else(|| panic!("no capture {name}"))
}
