"""The RouterOS simulator, checked over TCP by two clients that share none of its code:
a raw-socket client with its own minimal encoder (below) and the RouterOS-api package."""

import hashlib
import socket
import ssl
import threading
import time

import pytest
import routeros_api
from routeros_api.exceptions import RouterOsApiCommunicationError

from ispbill.sim.routeros import RouterOSSimulator

# --- an independent, minimal client --------------------------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    if n < 0x4000:
        return bytes([0x80 | n >> 8, n & 0xFF])
    if n < 0x200000:
        return bytes([0xC0 | n >> 16, n >> 8 & 0xFF, n & 0xFF])
    if n < 0x10000000:
        return bytes([0xE0 | n >> 24, n >> 16 & 0xFF, n >> 8 & 0xFF, n & 0xFF])
    return b"\xf0" + n.to_bytes(4, "big")


def raw_sentence(*words: str) -> bytes:
    out = b""
    for word in words:
        data = word.encode()
        out += _length(len(data)) + data
    return out + b"\x00"


class RawClient:
    opened: list["RawClient"] = []

    def __init__(self, port: int, tls: bool = False):
        RawClient.opened.append(self)
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock)
        self.sock = sock

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def word(self) -> str:
        first = self._exact(1)[0]
        if first < 0x80:
            n = first
        elif first < 0xC0:
            n = (first & 0x3F) << 8 | self._exact(1)[0]
        elif first < 0xE0:
            n = int.from_bytes(bytes([first & 0x1F]) + self._exact(2), "big")
        elif first < 0xF0:
            n = int.from_bytes(bytes([first & 0x0F]) + self._exact(3), "big")
        else:
            n = int.from_bytes(self._exact(4), "big")
        return self._exact(n).decode()

    def sentence(self) -> list[str]:
        words = []
        while (w := self.word()) != "":
            words.append(w)
        return words

    def reply(self) -> list[list[str]]:
        """Sentences up to and including !done (or a !fatal)."""
        out = []
        while True:
            s = self.sentence()
            out.append(s)
            if s[0] in ("!done", "!fatal"):
                return out

    def talk(self, *words: str) -> list[list[str]]:
        self.sock.sendall(raw_sentence(*words))
        return self.reply()

    def login(self, name="admin", password="pw"):
        assert self.talk("/login", f"=name={name}", f"=password={password}") == [["!done"]]
        return self

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, ssl.SSLError):
            return True

    def close(self):
        self.sock.close()


@pytest.fixture(autouse=True)
def _close_raw_clients():
    yield
    while RawClient.opened:
        RawClient.opened.pop().close()


@pytest.fixture
def sim():
    with RouterOSSimulator(users={"admin": "pw"}) as s:
        s.add_profile("home-10M")
        yield s


@pytest.fixture
def client(sim):
    c = RawClient(sim.port).login()
    yield c
    c.close()


# --- login ---------------------------------------------------------------------------


def test_wrong_password_traps_then_done_and_stays_unauthenticated(sim):
    c = RawClient(sim.port)
    assert c.talk("/login", "=name=admin", "=password=nope") == [
        ["!trap", "=message=invalid user name or password (6)"],
        ["!done"],
    ]
    assert c.talk("/ppp/secret/print") == [["!fatal", "not logged in"]]
    assert c.closed()


def test_legacy_challenge_login():
    with RouterOSSimulator(users={"admin": "pw"}, legacy_login=True) as s:
        c = RawClient(s.port)
        (done,) = c.talk("/login")
        assert done[0] == "!done" and done[1].startswith("=ret=")
        challenge = done[1][len("=ret=") :]
        assert len(challenge) == 32 and int(challenge, 16) >= 0
        response = "00" + hashlib.md5(b"\x00" + b"pw" + bytes.fromhex(challenge)).hexdigest()
        assert c.talk("/login", "=name=admin", f"=response={response}") == [["!done"]]
        assert c.talk("/system/identity/print") == [["!re", "=name=MikroTik"], ["!done"]]

        wrong = RawClient(s.port)
        # A new-style login on an old router just gets a challenge back.
        assert wrong.talk("/login", "=name=admin", "=password=pw")[0][1].startswith("=ret=")
        assert wrong.talk("/login", "=name=admin", "=response=00" + "0" * 32) == [
            ["!trap", "=message=cannot log in"],
            ["!done"],
        ]


# --- words and replies ---------------------------------------------------------------


def test_add_print_set_remove(client, sim):
    assert client.talk("/ppp/secret/add", "=name=1001", "=password=a=b", "=profile=home-10M", "=service=pppoe") == [
        ["!done", "=ret=*1"]
    ]
    assert client.talk("/ppp/secret/print", "=.proplist=.id,name,password,profile", "?=name=1001") == [
        ["!re", "=.id=*1", "=name=1001", "=password=a=b", "=profile=home-10M"],
        ["!done"],
    ]
    assert client.talk("/ppp/secret/set", "=numbers=*1", "=comment=x=y=", "=password=") == [["!done"]]
    assert sim.secret("1001")["comment"] == "x=y="
    assert sim.secret("1001")["password"] == ""
    assert client.talk("/ppp/secret/disable", "=.id=*1") == [["!done"]]
    assert sim.secret("1001")["disabled"] == "true"
    assert client.talk("/ppp/secret/enable", "=numbers=1001") == [["!done"]]  # by name
    assert sim.secret("1001")["disabled"] == "false"
    assert client.talk("/ppp/secret/remove", "=.id=*1") == [["!done"]]
    assert client.talk("/ppp/secret/remove", "=.id=*1") == [["!trap", "=message=no such item"], ["!done"]]
    assert sim.secrets() == []


def test_traps(client, sim):
    client.talk("/ppp/secret/add", "=name=alice")
    assert client.talk("/ppp/secret/add", "=name=alice") == [
        ["!trap", "=message=failure: secret with the same name already exists"],
        ["!done"],
    ]
    assert client.talk("/ip/firewall/address-list/add", "=list=suspended", "=address=10.1.1.5") == [
        ["!done", "=ret=*1"]
    ]
    assert client.talk("/ip/firewall/address-list/add", "=list=suspended", "=address=10.1.1.5") == [
        ["!trap", "=message=failure: already have such entry"],
        ["!done"],
    ]
    assert client.talk("/ppp/secret/set", "=.id=*1", "=profile=NoSuch") == [
        ["!trap", "=category=1", "=message=input does not match any value of profile"],
        ["!done"],
    ]
    assert client.talk("/interface/frobnicate") == [["!trap", "=category=0", "=message=no such command"], ["!done"]]
    assert client.talk("/ppp/active/add", "=name=x") == [
        ["!trap", "=category=0", "=message=no such command"],
        ["!done"],
    ]
    assert client.talk("/ppp/secret/set", "=.id=*1", "=colour=red")[0][-1] == "=message=unknown parameter colour"


def test_empty_print_with_and_without_empty_reply(client):
    assert client.talk("/ppp/secret/print", "?=name=nobody") == [["!done"]]
    with RouterOSSimulator(users={"admin": "pw"}, emit_empty=True) as s:
        c = RawClient(s.port).login()
        assert c.talk("/ppp/secret/print", "?=name=nobody") == [["!empty"], ["!done"]]
        assert c.talk("/system/identity/print") == [["!re", "=name=MikroTik"], ["!done"]]


def test_queries_over_the_wire(client, sim):
    for name, comment in [("a", "x"), ("b", ""), ("c", "x")]:
        sim.add_secret(name, comment=comment or None)
    names = lambda reply: [w[6:] for s in reply if s[0] == "!re" for w in s if w.startswith("=name=")]  # noqa: E731
    assert names(client.talk("/ppp/secret/print", "?comment")) == ["a", "c"]
    assert names(client.talk("/ppp/secret/print", "?-comment")) == ["b"]
    assert names(client.talk("/ppp/secret/print", "?name=b")) == ["b"]  # RouterOS-api style
    assert names(client.talk("/ppp/secret/print", "?=name=a", "?=name=c", "?#|")) == ["a", "c"]
    assert names(client.talk("/ppp/secret/print", "?=name=a", "?=name=c", "?#|!")) == ["b"]
    assert names(client.talk("/ppp/secret/print", "?>.id=*1")) == ["b", "c"]
    assert names(client.talk("/ppp/secret/print", "?<name=b")) == ["a"]
    assert client.talk("/ppp/secret/print", "=count-only=", "?comment=x") == [["!done", "=ret=2"]]
    assert client.talk("/ppp/secret/print", "?#|")[0][-1].startswith("=message=invalid query")


def test_tagged_commands_pipelined_in_one_write(client, sim):
    client.sock.sendall(
        raw_sentence("/ppp/secret/add", "=name=p1", ".tag=a")
        + raw_sentence("/ppp/secret/add", ".tag=b", "=name=p1")  # a tag may come anywhere after the command
        + raw_sentence("/ppp/secret/print", "=.proplist=name", ".tag=c")
        + raw_sentence("/ppp/secret/print", "=.proplist=name")  # untagged in between is fine too
    )
    assert client.reply() == [["!done", ".tag=a", "=ret=*1"]]
    assert client.reply() == [
        ["!trap", ".tag=b", "=message=failure: secret with the same name already exists"],
        ["!done", ".tag=b"],
    ]
    assert client.reply() == [["!re", ".tag=c", "=name=p1"], ["!done", ".tag=c"]]
    assert client.reply() == [["!re", "=name=p1"], ["!done"]]


def test_tcp_reassembly_one_byte_per_send(client, sim):
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = raw_sentence("/ppp/secret/add", "=name=slow", "=comment=" + "z" * 300, ".tag=9")
    for i in range(len(data)):
        client.sock.send(data[i : i + 1])
    assert client.reply() == [["!done", ".tag=9", "=ret=*1"]]
    assert sim.secret("slow")["comment"] == "z" * 300


@pytest.mark.parametrize("size", [0x7F, 0x80, 0x3FFF, 0x4000, 0x200000], ids=["1B", "2B", "2B-max", "3B", "4B"])
def test_long_words_both_ways(client, sim, size):
    sim.add_secret("long")
    word = "=comment=" + "c" * (size - len("=comment="))
    assert len(word) == size
    assert client.talk("/ppp/secret/set", "=numbers=long", word) == [["!done"]]
    (row, _) = client.talk("/ppp/secret/print", "=.proplist=comment", "?name=long")
    assert row == ["!re", word]


def test_unicode_names(client, sim):
    assert client.talk("/ppp/secret/add", "=name=রহিম", "=password=পাস")[0][0] == "!done"
    assert client.talk("/ppp/secret/print", "=.proplist=name,password", "?=name=রহিম") == [
        ["!re", "=name=রহিম", "=password=পাস"],
        ["!done"],
    ]


def test_active_sessions_and_ids(client, sim):
    sim.add_secret("1001")
    session = sim.add_active("1001", "10.1.1.5", caller_id="AA:BB:CC:DD:EE:FF")
    assert session == "*8000000A"
    ((re_, *words), done) = client.talk("/ppp/active/print", "?=name=1001")
    fields = dict(w[1:].split("=", 1) for w in words)
    assert fields[".id"] == "*8000000A"
    assert fields["address"] == "10.1.1.5"
    assert fields["caller-id"] == "AA:BB:CC:DD:EE:FF"
    assert {"uptime", "session-id", "service"} <= set(fields)
    assert client.talk("/ppp/active/remove", "=.id=*8000000A") == [["!done"]]
    assert sim.active() == []


def test_address_list_timeout_expires(client, sim):
    client.talk("/ip/firewall/address-list/add", "=list=suspended", "=address=10.0.0.9", "=timeout=1s")
    assert [e["address"] for e in sim.address_list("suspended")] == ["10.0.0.9"]
    time.sleep(1.05)
    assert sim.address_list("suspended") == []


def test_system_menus(client):
    assert client.talk("/system/identity/print") == [["!re", "=name=MikroTik"], ["!done"]]
    ((re_, *words), _) = client.talk("/system/resource/print", "=.proplist=version,board-name")
    assert words == ["=version=7.16.2", "=board-name=CHR"]
    assert client.talk("/ppp/profile/print", "=.proplist=name") == [
        ["!re", "=name=default"],
        ["!re", "=name=default-encryption"],
        ["!re", "=name=Suspended_Profile"],
        ["!re", "=name=home-10M"],
        ["!done"],
    ]


def test_quit_is_fatal_and_closes(client):
    assert client.talk("/quit") == [["!fatal", "session terminated on request"]]
    assert client.closed()


def test_control_byte_is_fatal(client):
    client.sock.sendall(b"\xf8\x00")
    (fatal,) = client.reply()
    assert fatal[0] == "!fatal" and "control byte" in fatal[1]
    assert client.closed()


def test_cancel_interrupts_a_queued_command():
    with RouterOSSimulator(users={"admin": "pw"}, latency=0.05) as s:
        c = RawClient(s.port).login()
        c.sock.sendall(
            raw_sentence("/ppp/secret/print", ".tag=1") + raw_sentence("/cancel", "=tag=1", ".tag=2")
        )
        assert c.reply() == [["!trap", ".tag=1", "=category=2", "=message=interrupted"], ["!done", ".tag=1"]]
        assert c.reply() == [["!done", ".tag=2"]]


def test_latency_is_a_delay_line_per_connection():
    latency = 0.2
    with RouterOSSimulator(users={"admin": "pw"}, latency=latency) as s:
        a, b = RawClient(s.port), RawClient(s.port)
        a.login(), b.login()
        started = time.monotonic()
        a.sock.sendall(b"".join(raw_sentence("/system/identity/print", f".tag={i}") for i in range(10)))
        b_elapsed = []

        def other():
            t0 = time.monotonic()
            b.talk("/system/identity/print")
            b_elapsed.append(time.monotonic() - t0)

        thread = threading.Thread(target=other)
        thread.start()
        for _ in range(10):
            a.reply()
        elapsed = time.monotonic() - started
        thread.join()
        # Ten pipelined commands: one latency, not ten; the other connection never waits.
        assert latency <= elapsed < latency * 3
        assert latency * 0.9 <= b_elapsed[0] < latency * 2


def test_restart_drops_connections_and_renumbers(client, sim):
    for name in ("a", "b", "c"):
        sim.add_secret(name)
    sim.add_active("a", "10.0.0.1")
    before = {r["name"]: r[".id"] for r in sim.secrets()}
    sim.restart()
    assert client.closed()
    after = {r["name"]: r[".id"] for r in sim.secrets()}
    assert before == {"a": "*1", "b": "*2", "c": "*3"}
    assert after == {"c": "*1", "b": "*2", "a": "*3"}
    assert sim.active()[0][".id"] != "*8000000A"
    fresh = RawClient(sim.port).login()
    assert fresh.talk("/ppp/secret/print", "=.proplist=.id", "?name=a") == [["!re", "=.id=*3"], ["!done"]]


def test_tls(server_tls):
    with RouterOSSimulator(users={"admin": "pw"}, ssl_context=server_tls) as s:
        c = RawClient(s.port, tls=True).login()
        assert c.talk("/system/identity/print") == [["!re", "=name=MikroTik"], ["!done"]]


# --- RouterOS-api (socialwifi): tags every sentence, one send per word ---------------


def test_routeros_api_client(sim):
    pool = routeros_api.RouterOsApiPool("127.0.0.1", "admin", "pw", port=sim.port, plaintext_login=True)
    api = pool.get_api()
    secrets = api.get_resource("/ppp/secret")
    secrets.add(name="1001", password="p", profile="home-10M", service="pppoe", comment="sub 7")
    secrets.add(name="007", password="q")
    rows = secrets.get(name="1001")
    assert len(rows) == 1
    assert rows[0]["name"] == "1001" and rows[0]["profile"] == "home-10M" and rows[0]["comment"] == "sub 7"
    secrets.set(id=rows[0]["id"], profile="Suspended_Profile", comment="")  # sent as "=comment"
    assert sim.secret("1001")["profile"] == "Suspended_Profile"
    assert "comment" not in sim.secret("1001")
    assert [r["name"] for r in secrets.get()] == ["1001", "007"]
    with pytest.raises(RouterOsApiCommunicationError, match="already exists"):
        secrets.add(name="007")
    secrets.remove(id=rows[0]["id"])
    assert [r["name"] for r in secrets.get()] == ["007"]
    binary = api.get_binary_resource("/").call("system/identity/print")
    assert binary[0]["name"] == b"MikroTik"
    pool.disconnect()


def test_routeros_api_challenge_login():
    with RouterOSSimulator(users={"admin": "pw"}, legacy_login=True) as s:
        pool = routeros_api.RouterOsApiPool("127.0.0.1", "admin", "pw", port=s.port)  # challenge login
        api = pool.get_api()
        assert api.get_resource("/system/identity").get()[0]["name"] == "MikroTik"
        pool.disconnect()
        bad = routeros_api.RouterOsApiPool("127.0.0.1", "admin", "wrong", port=s.port)
        with pytest.raises(RouterOsApiCommunicationError, match="cannot log in"):
            bad.get_api()
        bad.disconnect()  # RouterOS-api keeps the socket of a failed login open


def test_routeros_api_wrong_password(sim):
    pool = routeros_api.RouterOsApiPool("127.0.0.1", "admin", "nope", port=sim.port, plaintext_login=True)
    with pytest.raises(RouterOsApiCommunicationError, match=r"invalid user name or password \(6\)"):
        pool.get_api()
    pool.disconnect()


def test_closed_clients_are_forgotten(sim):
    for _ in range(3):
        RawClient(sim.port).login().close()
    deadline = time.monotonic() + 2
    while sim.connection_count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sim.connection_count == 0
    assert sim.connections_total == 3
