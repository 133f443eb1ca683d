// SPDX-License-Identifier: Apache-2.0
#include "migrate/peer_link.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace baton::migrate {

const char* link_error_name(LinkError e) {
  switch (e) {
    case LinkError::kNone: return "ok";
    case LinkError::kAuth: return "auth";
    case LinkError::kTransfer: return "transfer";
    case LinkError::kTimeout: return "timeout";
    case LinkError::kProtocol: return "protocol";
    case LinkError::kSetup: return "setup";
  }
  return "unknown";
}

FailReason to_fail_reason(const Error& e) {
  switch (e.code) {
    case LinkError::kNone: return FailReason::kNone;
    case LinkError::kAuth: return FailReason::kAuth;
    case LinkError::kTimeout: return FailReason::kTimeout;
    case LinkError::kProtocol:
      return e.codec == CodecError::kBadVersion ? FailReason::kUnsupported : FailReason::kTransfer;
    case LinkError::kTransfer:
    case LinkError::kSetup: return FailReason::kTransfer;
  }
  return FailReason::kTransfer;
}

namespace {

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

// timeout_ms < 0 means no deadline.
int64_t deadline_from(int timeout_ms) { return timeout_ms < 0 ? -1 : now_ms() + timeout_ms; }

// Waits for `events` on fd until the deadline: 1 ready, 0 timed out, -1 error (errno set).
int wait_fd(int fd, short events, int64_t deadline) {
  for (;;) {
    int wait = -1;
    if (deadline >= 0) {
      int64_t left = deadline - now_ms();
      wait = left <= 0 ? 0 : static_cast<int>(left);
    }
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, wait);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) return 0;
    return 1;  // readable, writable, or HUP/ERR: the next I/O call reports which
  }
}

// Drains OpenSSL's per-thread error queue into one line.
std::string ssl_errors() {
  std::string s;
  char buf[256];
  while (unsigned long e = ERR_get_error()) {
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!s.empty()) s += "; ";
    s += buf;
  }
  return s;
}

// Blocks SIGPIPE while OpenSSL writes to the socket (its socket BIO uses write(), not
// send(MSG_NOSIGNAL)) and discards a SIGPIPE that the write raised.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigset_t pending;
    sigemptyset(&set_);
    sigaddset(&set_, SIGPIPE);
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set_, &old_);
  }
  ~SigpipeGuard() {
    if (!was_pending_) {
      timespec zero{0, 0};
      while (sigtimedwait(&set_, nullptr, &zero) > 0) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t set_, old_;
  bool was_pending_ = false;
};

bool split_address(const std::string& address, std::string* host, std::string* port) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 >= address.size()) return false;
  *host = address.substr(0, colon);
  *port = address.substr(colon + 1);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']')
    *host = host->substr(1, host->size() - 2);
  return true;
}

std::string peer_common_name(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (!cert) return {};
  std::string out;
  X509_NAME* name = X509_get_subject_name(cert);
  int idx = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
  if (idx >= 0) {
    ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
    unsigned char* utf8 = nullptr;
    int len = ASN1_STRING_to_UTF8(&utf8, data);
    if (len >= 0) out.assign(reinterpret_cast<char*>(utf8), static_cast<size_t>(len));
    OPENSSL_free(utf8);
  }
  X509_free(cert);
  return out;
}

void set_error(Error* err, LinkError code, std::string detail) {
  if (!err) return;
  err->code = code;
  err->detail = std::move(detail);
  err->codec = CodecError::kOk;
}

struct AddrInfoFree {
  void operator()(addrinfo* a) const { freeaddrinfo(a); }
};
using AddrInfo = std::unique_ptr<addrinfo, AddrInfoFree>;

// "host:port" (IPv6 hosts in brackets) resolved for a stream socket; passive: to listen on,
// where an empty host means every address. nullptr (and *err) if malformed or unresolved.
AddrInfo resolve(const std::string& address, bool passive, Error* err) {
  std::string host, port;
  if (!split_address(address, &host, &port)) {
    set_error(err, LinkError::kSetup, "bad address '" + address + "' (want host:port)");
    return nullptr;
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = AF_UNSPEC;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const char* node = passive && host.empty() ? nullptr : host.c_str();
  if (int rc = getaddrinfo(node, port.c_str(), &hints, &res); rc != 0) {
    set_error(err, LinkError::kSetup, "resolve " + address + ": " + gai_strerror(rc));
    return nullptr;
  }
  return AddrInfo(res);
}

}  // namespace

// ---- TlsContext -------------------------------------------------------------------------------

std::unique_ptr<TlsContext> TlsContext::create(Role role, const std::string& cert_pem_path,
                                               const std::string& key_pem_path,
                                               const std::string& ca_pem_path, std::string* err) {
  ERR_clear_error();
  bool server = role == Role::kServer;
  SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  auto bail = [&](const std::string& what) -> std::unique_ptr<TlsContext> {
    if (err) *err = what + ": " + ssl_errors();
    if (ctx) SSL_CTX_free(ctx);
    return nullptr;
  };
  if (!ctx) return bail("SSL_CTX_new");
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1)
    return bail("TLS 1.3 only");
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_pem_path.c_str()) != 1)
    return bail("certificate " + cert_pem_path);
  if (SSL_CTX_use_PrivateKey_file(ctx, key_pem_path.c_str(), SSL_FILETYPE_PEM) != 1)
    return bail("private key " + key_pem_path);
  if (SSL_CTX_check_private_key(ctx) != 1) return bail("private key does not match certificate");
  if (SSL_CTX_load_verify_locations(ctx, ca_pem_path.c_str(), nullptr) != 1)
    return bail("CA " + ca_pem_path);
  // Both sides verify; the server also refuses a client that shows no certificate.
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                     nullptr);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // The link carries bulk state while a VM is frozen, so cipher speed is freeze time:
  // AES-128-GCM first (TLS 1.3's mandatory suite, ~15% faster than AES-256-GCM with AES-NI),
  // and the server's order decides. Reading ahead takes several records per recv() instead of
  // a header and a body each.
  if (SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                    "TLS_CHACHA20_POLY1305_SHA256") != 1)
    return bail("ciphersuites");
  if (server) SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_read_ahead(ctx, 1);
  if (server) {
    // One ticket: the client's proof that we accepted its certificate (see the header).
    SSL_CTX_set_num_tickets(ctx, 1);
  } else {
    // The new-session callback fires when the server's ticket arrives; nothing is stored.
    SSL_CTX_set_session_cache_mode(ctx,
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, &PeerLink::on_new_session);
  }
  return std::unique_ptr<TlsContext>(new TlsContext(role, ctx));
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

// ---- PeerLink ---------------------------------------------------------------------------------

int PeerLink::on_new_session(SSL* ssl, SSL_SESSION*) {
  if (auto* link = static_cast<PeerLink*>(SSL_get_app_data(ssl))) link->accepted_ = true;
  return 0;  // we did not keep a reference
}

PeerLink::~PeerLink() { close(); }

void PeerLink::close() {
  if (ssl_) {
    SigpipeGuard g;
    ERR_clear_error();
    // One try at close_notify; we do not wait for the peer's. Never after a fatal error
    // (RFC 8446 section 6.2: the alert already ended the connection).
    if (clean_) SSL_shutdown(ssl_);
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  {
    std::lock_guard<std::mutex> lock(fd_mu_);
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  rx_.clear();
  rx_have_ = 0;
}

void PeerLink::interrupt() {
  std::lock_guard<std::mutex> lock(fd_mu_);
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
}

bool PeerLink::fail(LinkError code, std::string detail, CodecError codec) {
  last_error_.code = code;
  last_error_.detail = std::move(detail);
  last_error_.codec = codec;
  return false;
}

bool PeerLink::handshake(int64_t deadline, bool client, Error* err) {
  SigpipeGuard g;
  for (;;) {
    ERR_clear_error();
    int r = client ? SSL_connect(ssl_) : SSL_accept(ssl_);
    if (r == 1) break;
    int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      int w = wait_fd(fd_, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
      if (w == 0) {
        set_error(err, LinkError::kTimeout, "TLS handshake timed out");
        return false;
      }
      if (w < 0) {
        set_error(err, LinkError::kTransfer, std::string("poll: ") + strerror(errno));
        return false;
      }
      continue;
    }
    long verify = SSL_get_verify_result(ssl_);
    unsigned long top = ERR_peek_error();
    std::string detail = ssl_errors();
    if (verify != X509_V_OK) {
      set_error(err, LinkError::kAuth, std::string("peer certificate rejected: ") +
                                           X509_verify_cert_error_string(verify));
    } else if (e == SSL_ERROR_SSL && ERR_GET_REASON(top) != SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      set_error(err, LinkError::kAuth, "TLS handshake failed: " + detail);
    } else {
      set_error(err, LinkError::kTransfer, "connection lost during TLS handshake" +
                                               (detail.empty() ? "" : ": " + detail));
    }
    return false;
  }
  if (SSL_get_verify_result(ssl_) != X509_V_OK || !SSL_get0_peer_certificate(ssl_)) {
    set_error(err, LinkError::kAuth, "peer presented no verified certificate");
    return false;
  }
  // Client: wait until the server has accepted our certificate (its NewSessionTicket arrives)
  // or refused it (an alert arrives). SSL_peek processes records without consuming data.
  while (client && !accepted_) {
    ERR_clear_error();
    char c;
    size_t n = 0;
    int r = SSL_peek_ex(ssl_, &c, 1, &n);
    if (r == 1) break;  // application data can only follow an accepted handshake
    int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      if (accepted_) break;  // the ticket was in this read
      int w = wait_fd(fd_, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
      if (w == 0) {
        set_error(err, LinkError::kTimeout, "server did not confirm the handshake in time");
        return false;
      }
      if (w < 0) {
        set_error(err, LinkError::kTransfer, std::string("poll: ") + strerror(errno));
        return false;
      }
      continue;
    }
    unsigned long top = ERR_peek_error();
    std::string detail = ssl_errors();
    if (e == SSL_ERROR_SSL && ERR_GET_REASON(top) != SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      set_error(err, LinkError::kAuth, "server refused our certificate: " + detail);
    } else {
      set_error(err, LinkError::kTransfer, "server closed before confirming the handshake");
    }
    return false;
  }
  peer_name_ = peer_common_name(ssl_);
  clean_ = true;
  return true;
}

std::unique_ptr<PeerLink> PeerLink::connect(TlsContext& ctx, const std::string& address,
                                            int timeout_ms, Error* err) {
  int64_t deadline = deadline_from(timeout_ms);
  if (ctx.role() != TlsContext::Role::kClient) {
    set_error(err, LinkError::kSetup, "connect needs a client TLS context");
    return nullptr;
  }
  const AddrInfo res = resolve(address, false, err);
  if (!res) return nullptr;
  int fd = -1;
  Error last;
  set_error(&last, LinkError::kTransfer, "no address for " + address);
  for (const addrinfo* ai = res.get(); ai && fd < 0; ai = ai->ai_next) {
    int s = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                     ai->ai_protocol);
    if (s < 0) {
      set_error(&last, LinkError::kSetup, std::string("socket: ") + strerror(errno));
      continue;
    }
    int rc = ::connect(s, ai->ai_addr, ai->ai_addrlen);
    if (rc < 0 && errno == EINPROGRESS) {
      int w = wait_fd(s, POLLOUT, deadline);
      if (w == 0) {
        set_error(&last, LinkError::kTimeout, "connect " + address + " timed out");
        ::close(s);
        break;
      }
      int soerr = 0;
      socklen_t len = sizeof(soerr);
      getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &len);
      rc = soerr ? -1 : 0;
      errno = soerr;
    }
    if (rc < 0) {
      set_error(&last, LinkError::kTransfer, "connect " + address + ": " + strerror(errno));
      ::close(s);
      continue;
    }
    fd = s;
  }
  if (fd < 0) {
    if (err) *err = last;
    return nullptr;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  SSL* ssl = SSL_new(ctx.native());
  if (!ssl) {
    ::close(fd);
    set_error(err, LinkError::kSetup, "SSL_new: " + ssl_errors());
    return nullptr;
  }
  SSL_set_fd(ssl, fd);
  std::unique_ptr<PeerLink> link(new PeerLink(fd, ssl));
  SSL_set_app_data(ssl, link.get());
  if (!link->handshake(deadline, true, err)) return nullptr;
  if (err) *err = Error{};
  return link;
}

bool PeerLink::send(const std::vector<uint8_t>& frame, int timeout_ms) {
  return send(frame.data(), frame.size(), timeout_ms);
}

bool PeerLink::send(const uint8_t* p, size_t n, int timeout_ms) {
  if (!ssl_) return fail(LinkError::kTransfer, "link is closed");
  int64_t deadline = deadline_from(timeout_ms);
  SigpipeGuard g;
  size_t off = 0;
  while (off < n) {
    ERR_clear_error();
    size_t written = 0;
    int r = SSL_write_ex(ssl_, p + off, n - off, &written);
    if (r == 1) {
      off += written;
      continue;
    }
    int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      int w = wait_fd(fd_, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
      if (w == 0) return fail(LinkError::kTimeout, "send timed out; the link must be closed");
      if (w < 0) return fail(LinkError::kTransfer, std::string("poll: ") + strerror(errno));
      continue;
    }
    std::string detail = ssl_errors();
    clean_ = false;
    return fail(LinkError::kTransfer,
                "send failed: " + (detail.empty() ? std::string(strerror(errno)) : detail));
  }
  last_error_ = Error{};
  return true;
}

RecvResult PeerLink::recv(Frame* out, int timeout_ms) {
  auto result = [&](bool ok) {
    if (ok) last_error_ = Error{};
    return last_error_;
  };
  if (!ssl_) return result(fail(LinkError::kTransfer, "link is closed"));
  int64_t deadline = deadline_from(timeout_ms);
  SigpipeGuard g;  // a read may write too (an alert, a TLS 1.3 post-handshake message)
  FrameHeader h;
  for (;;) {
    // The header goes to rx_head_, the body straight into rx_, which is then swapped with the
    // caller's body: no copy, and a caller that reuses its Frame lends its buffer for the next.
    uint8_t* at;
    size_t want;
    if (rx_have_ < kHeaderSize) {
      at = rx_head_ + rx_have_;
      want = kHeaderSize - rx_have_;
    } else {
      CodecError ce = decode_header(rx_head_, kHeaderSize, &h);
      if (ce != CodecError::kOk) {
        // The stream is out of step; nothing after this can be trusted.
        close();
        return result(
            fail(LinkError::kProtocol, std::string("bad frame: ") + codec_error_name(ce), ce));
      }
      const size_t have = rx_have_ - kHeaderSize;
      if (have == h.body_len) break;
      if (rx_.size() != h.body_len) rx_.resize(h.body_len);
      at = rx_.data() + have;
      want = h.body_len - have;
    }
    ERR_clear_error();
    size_t got = 0;
    int r = SSL_read_ex(ssl_, at, want, &got);
    if (r == 1) {
      rx_have_ += got;
      continue;
    }
    int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      // Only now wait: OpenSSL may hold decrypted bytes that poll() cannot see.
      int w = wait_fd(fd_, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
      if (w == 0) return result(fail(LinkError::kTimeout, "no frame within the timeout"));
      if (w < 0) return result(fail(LinkError::kTransfer, std::string("poll: ") + strerror(errno)));
      continue;
    }
    std::string detail = e == SSL_ERROR_ZERO_RETURN ? "peer closed the link" : ssl_errors();
    if (detail.empty()) detail = "connection lost";
    clean_ = false;
    close();
    return result(fail(LinkError::kTransfer, detail));
  }
  out->header = h;
  rx_.resize(h.body_len);  // an empty body skipped the resize above
  out->body.swap(rx_);
  rx_have_ = 0;
  if (rx_.capacity() > (1u << 20)) std::vector<uint8_t>().swap(rx_);  // do not pin 16 MiB
  return result(true);
}

// ---- PeerListener -----------------------------------------------------------------------------

std::unique_ptr<PeerListener> PeerListener::listen(TlsContext& ctx, const std::string& address,
                                                   Error* err) {
  if (ctx.role() != TlsContext::Role::kServer) {
    set_error(err, LinkError::kSetup, "listen needs a server TLS context");
    return nullptr;
  }
  const AddrInfo res = resolve(address, true, err);
  if (!res) return nullptr;
  int fd = -1;
  std::string why = "no address";
  for (const addrinfo* ai = res.get(); ai && fd < 0; ai = ai->ai_next) {
    int s = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                     ai->ai_protocol);
    if (s < 0) {
      why = std::string("socket: ") + strerror(errno);
      continue;
    }
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(s, ai->ai_addr, ai->ai_addrlen) < 0 || ::listen(s, 16) < 0) {
      why = std::string("bind/listen: ") + strerror(errno);
      ::close(s);
      continue;
    }
    fd = s;
  }
  if (fd < 0) {
    set_error(err, LinkError::kSetup, "listen " + address + ": " + why);
    return nullptr;
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  uint16_t bound = ss.ss_family == AF_INET6
                       ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                       : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (err) *err = Error{};
  return std::unique_ptr<PeerListener>(new PeerListener(ctx, fd, bound));
}

PeerListener::~PeerListener() {
  if (fd_ >= 0) ::close(fd_);
}

std::unique_ptr<PeerLink> PeerListener::accept(int timeout_ms, Error* err, int handshake_ms) {
  int64_t deadline = deadline_from(timeout_ms);
  int fd = -1;
  while (fd < 0) {
    int w = wait_fd(fd_, POLLIN, deadline);
    if (w == 0) {
      set_error(err, LinkError::kTimeout, "no connection within the timeout");
      return nullptr;
    }
    if (w < 0) {
      set_error(err, LinkError::kSetup, std::string("poll: ") + strerror(errno));
      return nullptr;
    }
    fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
        errno != ECONNABORTED) {
      set_error(err, LinkError::kSetup, std::string("accept: ") + strerror(errno));
      return nullptr;
    }
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  SSL* ssl = SSL_new(ctx_.native());
  if (!ssl) {
    ::close(fd);
    set_error(err, LinkError::kSetup, "SSL_new: " + ssl_errors());
    return nullptr;
  }
  SSL_set_fd(ssl, fd);
  std::unique_ptr<PeerLink> link(new PeerLink(fd, ssl));
  SSL_set_app_data(ssl, link.get());
  // The wait for a connection may be short (a caller polling for shutdown); the handshake of
  // a connection that did arrive gets its own budget on a loaded machine.
  if (handshake_ms >= 0) deadline = deadline_from(handshake_ms);
  if (!link->handshake(deadline, false, err)) return nullptr;
  if (err) *err = Error{};
  return link;
}

}  // namespace baton::migrate
