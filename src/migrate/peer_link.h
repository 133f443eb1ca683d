// SPDX-License-Identifier: Apache-2.0
//
// The authenticated byte pipe between two Baton instances: mutual TLS 1.3 over TCP (OpenSSL 3),
// carrying codec frames.
//
// Theory of operation. Both sides hold a certificate signed by the deployment's CA and verify
// the other's chain to that CA; the server refuses a client without a certificate. Only TLS 1.3
// is offered. The socket is non-blocking and every wait is a poll() bounded by the caller's
// timeout, so a stalled or silent peer turns into TIMEOUT, never into a hung control core.
//
// TLS 1.3 lets a client finish its handshake before the server has looked at the client's
// certificate (RFC 8446 section 4.4.2: the client's Certificate/Finished are its last flight).
// So connect() does not return on SSL_connect alone: it waits for the server's first
// post-handshake record, the NewSessionTicket the server sends only after it accepted the
// client's certificate. A server that refuses us sends an alert instead, and connect() fails with
// AUTH. The ticket is never used to resume (every connection verifies both certificates afresh).
//
// Errors, so that the engine can map them to feedback (to_fail_reason):
//   AUTH      handshake or certificate verification failed (either side)
//   TRANSFER  connection refused, reset, closed (EOF or close_notify) after the handshake
//   TIMEOUT   the deadline passed first
//   PROTOCOL  the bytes were not a valid frame (bad magic/version/kind, oversized)
//   SETUP     local problem: bad address, socket() failed, ...
//
// Threading: a PeerLink or PeerListener is not thread-safe; one thread uses it at a time (the
// migration session that owns it), except interrupt(), which any thread may call while the
// object lives. Different links are independent. SIGPIPE from a write to a
// closed socket is blocked for the duration of the write and discarded, so a lost peer is an
// error code, not a signal that kills batond.
//
// After a TIMEOUT in send() the TLS stream may hold half a record: close the link. After a
// TIMEOUT in recv() the link stays usable: bytes already read are kept and the next recv()
// continues the same frame.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "migrate/codec.h"
#include "migrate/feedback.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;

namespace baton::migrate {

enum class LinkError : uint8_t { kNone, kAuth, kTransfer, kTimeout, kProtocol, kSetup };
const char* link_error_name(LinkError e);

struct Error {
  LinkError code = LinkError::kNone;
  std::string detail;
  CodecError codec = CodecError::kOk;  // for kProtocol
};

// AUTH -> AUTH, TIMEOUT -> TIMEOUT, a frame of an unknown protocol version -> UNSUPPORTED,
// everything else (reset, EOF, garbage) -> TRANSFER.
FailReason to_fail_reason(const Error& e);

class TlsContext {
 public:
  enum class Role : uint8_t { kServer, kClient };
  // Loads the certificate chain, the private key (checked against the certificate) and the CA
  // that peers must chain to. nullptr and *err on failure.
  static std::unique_ptr<TlsContext> create(Role role, const std::string& cert_pem_path,
                                            const std::string& key_pem_path,
                                            const std::string& ca_pem_path, std::string* err);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  Role role() const { return role_; }
  SSL_CTX* native() const { return ctx_; }

 private:
  TlsContext(Role role, SSL_CTX* ctx) : role_(role), ctx_(ctx) {}
  Role role_;
  SSL_CTX* ctx_;
};

using RecvResult = Error;  // code kNone = one frame received

class PeerLink {
 public:
  // TCP connect + TLS handshake + wait for the server's acceptance, all within timeout_ms.
  // `address` is "host:port" or "[v6]:port". The context must have Role::kClient.
  static std::unique_ptr<PeerLink> connect(TlsContext& ctx, const std::string& address,
                                           int timeout_ms, Error* err);
  ~PeerLink();
  PeerLink(const PeerLink&) = delete;
  PeerLink& operator=(const PeerLink&) = delete;

  // Writes all of `frame` (one or more encoded frames) or fails; last_error() says why.
  bool send(const std::vector<uint8_t>& frame, int timeout_ms);
  bool send(const uint8_t* p, size_t n, int timeout_ms);
  // Reads exactly one frame: the header, checked, then body_len bytes.
  RecvResult recv(Frame* out, int timeout_ms);
  // Sends close_notify (best effort, no wait) and closes the socket. Idempotent.
  void close();
  // From another thread: shuts the socket down both ways, so that the owner's send() or recv()
  // in progress (or next) fails with TRANSFER at once. Used when a source has come back on a
  // new connection (RESUME) while the owner still waits on a connection that went silent.
  void interrupt();

  const std::string& peer_name() const { return peer_name_; }  // subject CN of the peer cert
  const Error& last_error() const { return last_error_; }
  bool is_open() const { return ssl_ != nullptr; }

 public:
  // OpenSSL callback (client): the server's NewSessionTicket arrived. Not for other callers.
  static int on_new_session(SSL* ssl, SSL_SESSION* sess);

 private:
  friend class PeerListener;
  PeerLink(int fd, SSL* ssl) : fd_(fd), ssl_(ssl) {}
  // Runs the handshake to completion; server or client per the SSL object.
  bool handshake(int64_t deadline_ms, bool client, Error* err);
  bool fail(LinkError code, std::string detail, CodecError codec = CodecError::kOk);

  std::mutex fd_mu_;  // fd_ against interrupt() from another thread
  int fd_ = -1;
  SSL* ssl_ = nullptr;
  std::string peer_name_;
  Error last_error_;
  // The frame being received (kept across a TIMEOUT): header, then body.
  uint8_t rx_head_[kHeaderSize] = {};
  std::vector<uint8_t> rx_;
  size_t rx_have_ = 0;  // bytes of it read so far, header included
  bool clean_ = false;       // handshake done and no fatal error: close_notify may be sent
  bool accepted_ = false;    // client: the server's NewSessionTicket arrived
};

class PeerListener {
 public:
  // Binds and listens on "host:port" (port 0 = any; port() tells which). Role::kServer context.
  static std::unique_ptr<PeerListener> listen(TlsContext& ctx, const std::string& address,
                                              Error* err);
  ~PeerListener();
  PeerListener(const PeerListener&) = delete;
  PeerListener& operator=(const PeerListener&) = delete;

  // Waits for one connection and runs the handshake, both within timeout_ms. A peer that fails
  // authentication gets an alert and nothing else; the listener stays usable.
  // handshake_ms >= 0 gives the handshake its own budget, counted from the accept.
  std::unique_ptr<PeerLink> accept(int timeout_ms, Error* err, int handshake_ms = -1);
  uint16_t port() const { return port_; }

 private:
  PeerListener(TlsContext& ctx, int fd, uint16_t port) : ctx_(ctx), fd_(fd), port_(port) {}
  TlsContext& ctx_;
  int fd_;
  uint16_t port_;
};

}  // namespace baton::migrate
