//! The dev mail servers (`scripts/dev-services`): finding them (starting them if need be), raw SMTP to
//! send and a raw IMAP client to read, std only, so tests check Postroom's mail code against something
//! that is not Postroom's mail code.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
pub const DELIVERY_WAIT: Duration = Duration::from_secs(10);

pub struct Servers {
    pub host: String,
    pub imap_port: u16,
    pub imaps_port: u16,
    pub smtp_port: u16,
    pub smtps_port: u16,
    pub password: String,
    pub ca: String,
}

fn var(vars: &BTreeMap<String, String>, key: &str) -> String {
    vars.get(key).cloned().unwrap_or_else(|| panic!("{key} missing from the dev-services environment"))
}

/// `export K=V` lines as printed by `scripts/dev-services env`.
fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn skip_or_fail(message: &str) -> Option<Servers> {
    if std::env::var("POSTROOM_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
        panic!("POSTROOM_REQUIRE_TOOLS=1 but {message}");
    }
    // Straight to stderr, past the test harness's capture, so the skip shows in a passing run.
    let _ = std::io::stderr().write_all(format!("\n*** SKIP (mail servers): {message} ***\n\n").as_bytes());
    None
}

pub fn servers() -> Option<Servers> {
    let vars: BTreeMap<String, String> = if std::env::var_os("POSTROOM_TEST_SMTP_PORT").is_some() {
        std::env::vars().filter(|(k, _)| k.starts_with("POSTROOM_TEST_")).collect()
    } else {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dev-services");
        let start = match Command::new(&script).arg("start").output() {
            Ok(out) => out,
            Err(e) => return skip_or_fail(&format!("could not run {}: {e}", script.display())),
        };
        if !start.status.success() {
            return skip_or_fail(&format!(
                "`scripts/dev-services start` failed ({}):\n{}{}",
                start.status,
                String::from_utf8_lossy(&start.stdout),
                String::from_utf8_lossy(&start.stderr)
            ));
        }
        let env = Command::new(&script).arg("env").output().expect("scripts/dev-services env");
        assert!(env.status.success(), "scripts/dev-services env failed: {}", String::from_utf8_lossy(&env.stderr));
        parse_env(&String::from_utf8_lossy(&env.stdout))
    };
    Some(Servers {
        host: var(&vars, "POSTROOM_TEST_IMAP_HOST"),
        imap_port: var(&vars, "POSTROOM_TEST_IMAP_PORT").parse().expect("IMAP port"),
        imaps_port: var(&vars, "POSTROOM_TEST_IMAPS_PORT").parse().expect("IMAPS port"),
        smtp_port: var(&vars, "POSTROOM_TEST_SMTP_PORT").parse().expect("SMTP port"),
        smtps_port: var(&vars, "POSTROOM_TEST_SMTPS_PORT").parse().expect("SMTPS port"),
        password: var(&vars, "POSTROOM_TEST_MAIL_PASSWORD"),
        ca: var(&vars, "POSTROOM_TEST_CA"),
    })
}

pub fn connect(host: &str, port: u16) -> BufReader<TcpStream> {
    let stream = TcpStream::connect((host, port)).unwrap_or_else(|e| panic!("connect {host}:{port}: {e}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    BufReader::new(stream)
}

pub fn read_line(conn: &mut BufReader<TcpStream>) -> Vec<u8> {
    let mut line = Vec::new();
    conn.read_until(b'\n', &mut line).expect("read from server");
    assert!(!line.is_empty(), "server closed the connection");
    line
}

/// One SMTP reply (all its continuation lines); panics unless its code is `want`.
pub fn smtp_reply(conn: &mut BufReader<TcpStream>, want: &str) -> String {
    let mut reply = String::new();
    loop {
        let line = String::from_utf8_lossy(&read_line(conn)).into_owned();
        reply.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    }
    assert!(reply.starts_with(want), "SMTP: expected {want}, got {reply:?}");
    reply
}

pub fn smtp(conn: &mut BufReader<TcpStream>, command: &str, want: &str) -> String {
    conn.get_mut().write_all(format!("{command}\r\n").as_bytes()).expect("write SMTP command");
    smtp_reply(conn, want)
}

pub fn send(servers: &Servers, from: &str, to: &str, message: &str) {
    let mut conn = connect(&servers.host, servers.smtp_port);
    smtp_reply(&mut conn, "220");
    smtp(&mut conn, "EHLO dev-services-test.postroom.test", "250");
    smtp(&mut conn, &format!("MAIL FROM:<{from}>"), "250");
    smtp(&mut conn, &format!("RCPT TO:<{to}>"), "250");
    smtp(&mut conn, "DATA", "354");
    // Lines of the message never start with '.', so no dot-stuffing is needed.
    smtp(&mut conn, &format!("{message}\r\n."), "250");
    smtp(&mut conn, "QUIT", "221");
}

pub struct Imap {
    conn: BufReader<TcpStream>,
    tag: u32,
}

impl Imap {
    pub fn connect(host: &str, port: u16) -> Imap {
        let mut conn = connect(host, port);
        let greeting = String::from_utf8_lossy(&read_line(&mut conn)).into_owned();
        assert!(greeting.starts_with("* OK"), "IMAP greeting: {greeting:?}");
        Imap { conn, tag: 0 }
    }

    /// Sends a command and returns everything up to and including its tagged OK, literals included.
    pub fn command(&mut self, command: &str) -> Vec<u8> {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        self.conn.get_mut().write_all(format!("{tag} {command}\r\n").as_bytes()).expect("write IMAP command");
        let mut response = Vec::new();
        loop {
            let line = read_line(&mut self.conn);
            response.extend_from_slice(&line);
            // A line ending in {N} is followed by N bytes of literal, then the rest of the response line.
            if let Some(n) = literal_length(&line) {
                let mut literal = vec![0; n];
                self.conn.read_exact(&mut literal).expect("read IMAP literal");
                response.extend_from_slice(&literal);
                continue;
            }
            if let Some(status) = line.strip_prefix(format!("{tag} ").as_bytes()) {
                assert!(status.starts_with(b"OK"), "IMAP {command:?} failed: {}", String::from_utf8_lossy(&response));
                return response;
            }
        }
    }
}

pub fn literal_length(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r\n")?.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&line[open + 1..]).ok()?.parse().ok()
}

pub fn exists(select_response: &[u8]) -> usize {
    String::from_utf8_lossy(select_response)
        .lines()
        .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS")?.parse().ok())
        .expect("SELECT response without EXISTS")
}

/// A fresh address on the dev servers: Dovecot accepts any user with the test password.
pub fn unique_address(what: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    format!("{what}-{}-{nanos}@postroom.test", std::process::id())
}

impl Imap {
    /// Logs in as `user` and returns the raw messages in `folder` once there are at least `want`, waiting
    /// up to `wait`.
    pub fn wait_for(servers: &Servers, user: &str, folder: &str, want: usize, wait: Duration) -> Vec<String> {
        let mut imap = Imap::connect(&servers.host, servers.imap_port);
        imap.command(&format!("LOGIN \"{user}\" \"{}\"", servers.password));
        let started = Instant::now();
        loop {
            let n = match imap.try_command(&format!("SELECT \"{folder}\"")) {
                Some(r) => exists(&r),
                None => 0,
            };
            if n >= want || started.elapsed() >= wait {
                let messages =
                    if n == 0 { Vec::new() } else { split_messages(&imap.command("UID FETCH 1:* BODY.PEEK[]")) };
                imap.command("LOGOUT");
                return messages;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Like `command`, but None instead of a panic when the server says NO (a folder not created yet).
    pub fn try_command(&mut self, command: &str) -> Option<Vec<u8>> {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        self.conn.get_mut().write_all(format!("{tag} {command}\r\n").as_bytes()).ok()?;
        let mut response = Vec::new();
        loop {
            let line = read_line(&mut self.conn);
            response.extend_from_slice(&line);
            if let Some(n) = literal_length(&line) {
                let mut literal = vec![0; n];
                self.conn.read_exact(&mut literal).ok()?;
                response.extend_from_slice(&literal);
                continue;
            }
            if let Some(status) = line.strip_prefix(format!("{tag} ").as_bytes()) {
                return status.starts_with(b"OK").then_some(response);
            }
        }
    }
}

/// The message literals of a `UID FETCH ... BODY.PEEK[]` response.
pub fn split_messages(response: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = response;
    while let Some(open) = rest.iter().position(|&b| b == b'{') {
        let Some(close) = rest[open..].iter().position(|&b| b == b'}') else { break };
        let Ok(n) = std::str::from_utf8(&rest[open + 1..open + close]).unwrap_or("x").parse::<usize>() else {
            rest = &rest[open + 1..];
            continue;
        };
        let start = open + close + 3;
        let Some(body) = rest.get(start..start + n) else { break };
        out.push(String::from_utf8_lossy(body).into_owned());
        rest = &rest[start + n..];
    }
    out
}

/// A delivered message made readable: its headers unfolded and decoded, and its text/plain body decoded.
pub struct Readable {
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl Readable {
    pub fn parse(raw: &str) -> Readable {
        let mail = mailparse::parse_mail(raw.as_bytes()).expect("a parseable message");
        let headers = mail.headers.iter().map(|h| (h.get_key(), h.get_value())).collect();
        let mut text = String::new();
        let mut stack = vec![&mail];
        while let Some(part) = stack.pop() {
            if part.ctype.mimetype == "text/plain" && text.is_empty() {
                text = part.get_body().unwrap_or_default();
            }
            stack.extend(part.subparts.iter().rev());
        }
        Readable { headers, text }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}
