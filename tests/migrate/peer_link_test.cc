// SPDX-License-Identifier: Apache-2.0
#include "migrate/peer_link.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "test_pki.h"

namespace baton::migrate {
namespace {

std::unique_ptr<TlsContext> context(TlsContext::Role role, const std::string& who,
                                    const std::string& ca = "ca") {
  Pki& p = Pki::get();
  std::string err;
  auto ctx = TlsContext::create(role, p.path(who + ".pem"), p.path(who + ".key"),
                                p.path(ca + ".pem"), &err);
  EXPECT_TRUE(ctx) << err;
  return ctx;
}

class PeerLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Pki::get().ok()) << "openssl CLI failed to make the test PKI";
    server_ctx_ = context(TlsContext::Role::kServer, "b");
    client_ctx_ = context(TlsContext::Role::kClient, "a");
    ASSERT_TRUE(server_ctx_ && client_ctx_);
    Error err;
    listener_ = PeerListener::listen(*server_ctx_, "127.0.0.1:0", &err);
    ASSERT_TRUE(listener_) << err.detail;
    address_ = "127.0.0.1:" + std::to_string(listener_->port());
  }
  // Connects a client while the listener accepts on another thread.
  void pair(std::unique_ptr<PeerLink>* client, std::unique_ptr<PeerLink>* server) {
    Error serr, cerr;
    std::thread t([&] { *server = listener_->accept(5000, &serr); });
    *client = PeerLink::connect(*client_ctx_, address_, 5000, &cerr);
    t.join();
    ASSERT_TRUE(*client) << cerr.detail;
    ASSERT_TRUE(*server) << serr.detail;
  }

  std::unique_ptr<TlsContext> server_ctx_, client_ctx_;
  std::unique_ptr<PeerListener> listener_;
  std::string address_;
};

int64_t elapsed_ms(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               t0)
      .count();
}

TEST_F(PeerLinkTest, MutualAuthHandshakeCarriesFramesBothWays) {
  std::unique_ptr<PeerLink> c, s;
  ASSERT_NO_FATAL_FAILURE(pair(&c, &s));
  EXPECT_EQ(c->peer_name(), "baton-b");
  EXPECT_EQ(s->peer_name(), "baton-a");

  ASSERT_TRUE(c->send(encode_frame(HelloMsg{1, 1, "baton-a", 1}, 7, 1), 2000));
  Frame f;
  ASSERT_EQ(s->recv(&f, 2000).code, LinkError::kNone);
  HelloMsg hello;
  ASSERT_EQ(decode_body(f, &hello), CodecError::kOk);
  EXPECT_EQ(hello.instance, "baton-a");
  EXPECT_EQ(f.header.migration_id, 7u);

  // A multi-megabyte frame crosses many TLS records and partial reads; the writer runs on its
  // own thread because neither side can buffer the whole frame in the socket.
  EntriesMsg big;
  big.round = 2;
  big.records.resize(30000);
  for (size_t i = 0; i < big.records.size(); ++i) {
    big.records[i].key.family = Family::kV4;
    big.records[i].version = static_cast<uint32_t>(i);
  }
  auto bytes = encode_frame(big, 7, 2);
  bool sent = false;
  std::thread w([&] { sent = s->send(bytes, 5000); });
  ASSERT_EQ(c->recv(&f, 5000).code, LinkError::kNone);
  w.join();
  EXPECT_TRUE(sent);
  EntriesMsg out;
  ASSERT_EQ(decode_body(f, &out), CodecError::kOk);
  EXPECT_TRUE(out == big);
  ASSERT_TRUE(s->send(encode_frame(AckMsg{2}, 7, 3), 2000));
  ASSERT_EQ(c->recv(&f, 2000).code, LinkError::kNone);
  EXPECT_EQ(f.header.kind, MsgKind::kAck);
}

TEST_F(PeerLinkTest, ClientFromAnotherCaFailsAuthOnBothSidesAndGetsNothing) {
  auto rogue = context(TlsContext::Role::kClient, "rogue", "ca");  // trusts our CA, not trusted
  Error serr, cerr;
  std::unique_ptr<PeerLink> s;
  std::thread t([&] { s = listener_->accept(5000, &serr); });
  auto c = PeerLink::connect(*rogue, address_, 5000, &cerr);
  t.join();
  EXPECT_FALSE(s);
  EXPECT_EQ(serr.code, LinkError::kAuth) << serr.detail;
  EXPECT_FALSE(c);
  EXPECT_EQ(cerr.code, LinkError::kAuth) << cerr.detail;
  EXPECT_EQ(to_fail_reason(cerr), FailReason::kAuth);
  // The listener survives and serves the next, legitimate peer.
  std::unique_ptr<PeerLink> c2, s2;
  ASSERT_NO_FATAL_FAILURE(pair(&c2, &s2));
}

TEST_F(PeerLinkTest, ServerFromAnotherCaFailsAuthAtTheClient) {
  auto rogue_server = context(TlsContext::Role::kServer, "rogue", "ca");
  Error err;
  auto l = PeerListener::listen(*rogue_server, "127.0.0.1:0", &err);
  ASSERT_TRUE(l);
  Error serr, cerr;
  std::unique_ptr<PeerLink> s;
  std::thread t([&] { s = l->accept(5000, &serr); });
  auto c = PeerLink::connect(*client_ctx_, "127.0.0.1:" + std::to_string(l->port()), 5000, &cerr);
  t.join();
  EXPECT_FALSE(c);
  EXPECT_EQ(cerr.code, LinkError::kAuth) << cerr.detail;
  EXPECT_FALSE(s);
  EXPECT_EQ(serr.code, LinkError::kAuth) << serr.detail;
}

TEST_F(PeerLinkTest, SilentPeerMakesRecvTimeOutAndTheLinkStaysUsable) {
  std::unique_ptr<PeerLink> c, s;
  ASSERT_NO_FATAL_FAILURE(pair(&c, &s));
  Frame f;
  auto t0 = std::chrono::steady_clock::now();
  RecvResult r = c->recv(&f, 200);
  int64_t ms = elapsed_ms(t0);
  EXPECT_EQ(r.code, LinkError::kTimeout);
  EXPECT_GE(ms, 180);
  EXPECT_LT(ms, 1000);
  EXPECT_EQ(to_fail_reason(r), FailReason::kTimeout);

  // Half a frame, then silence: still a timeout, and the rest completes the same frame.
  auto bytes = encode_frame(RoundEndMsg{4, 99}, 1, 5);
  ASSERT_TRUE(s->send(bytes.data(), 10, 1000));
  EXPECT_EQ(c->recv(&f, 200).code, LinkError::kTimeout);
  ASSERT_TRUE(s->send(bytes.data() + 10, bytes.size() - 10, 1000));
  ASSERT_EQ(c->recv(&f, 2000).code, LinkError::kNone);
  RoundEndMsg m;
  ASSERT_EQ(decode_body(f, &m), CodecError::kOk);
  EXPECT_EQ(m.entries, 99u);
}

TEST_F(PeerLinkTest, ClosedPeerGivesTransfer) {
  std::unique_ptr<PeerLink> c, s;
  ASSERT_NO_FATAL_FAILURE(pair(&c, &s));
  s.reset();  // close_notify + close
  Frame f;
  RecvResult r = c->recv(&f, 2000);
  EXPECT_EQ(r.code, LinkError::kTransfer) << r.detail;
  EXPECT_EQ(to_fail_reason(r), FailReason::kTransfer);
  EXPECT_FALSE(c->is_open());
  EXPECT_EQ(c->recv(&f, 100).code, LinkError::kTransfer);
  EXPECT_FALSE(c->send(encode_frame(AckMsg{1}, 1, 1), 100));
  EXPECT_EQ(c->last_error().code, LinkError::kTransfer);
}

TEST_F(PeerLinkTest, WritingToAVanishedPeerGivesTransferNotSigpipe) {
  std::unique_ptr<PeerLink> c, s;
  ASSERT_NO_FATAL_FAILURE(pair(&c, &s));
  s.reset();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto bytes = encode_frame(HeldPacketsMsg{{{Side::kVm, std::vector<uint8_t>(9000, 1)}}}, 1, 1);
  bool ok = true;
  for (int i = 0; i < 100 && ok; ++i) {
    ok = c->send(bytes, 500);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_FALSE(ok);
  EXPECT_EQ(c->last_error().code, LinkError::kTransfer) << c->last_error().detail;
}

TEST_F(PeerLinkTest, GarbageOnTheLinkIsAProtocolError) {
  std::unique_ptr<PeerLink> c, s;
  ASSERT_NO_FATAL_FAILURE(pair(&c, &s));
  std::vector<uint8_t> junk(kHeaderSize, 0x41);
  ASSERT_TRUE(s->send(junk, 1000));
  Frame f;
  RecvResult r = c->recv(&f, 2000);
  EXPECT_EQ(r.code, LinkError::kProtocol);
  EXPECT_EQ(r.codec, CodecError::kBadMagic);
}

TEST_F(PeerLinkTest, ConnectToNothingIsTransferAndToAStalledServerIsTimeout) {
  // A port that was just free: nothing listens there.
  int port;
  {
    Error err;
    auto l = PeerListener::listen(*server_ctx_, "127.0.0.1:0", &err);
    port = l->port();
  }
  Error err;
  EXPECT_FALSE(PeerLink::connect(*client_ctx_, "127.0.0.1:" + std::to_string(port), 1000, &err));
  EXPECT_EQ(err.code, LinkError::kTransfer) << err.detail;
  // The listener's backlog completes TCP, but nobody runs the TLS handshake.
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(PeerLink::connect(*client_ctx_, address_, 300, &err));
  EXPECT_EQ(err.code, LinkError::kTimeout) << err.detail;
  EXPECT_LT(elapsed_ms(t0), 1500);
  EXPECT_FALSE(PeerLink::connect(*client_ctx_, "no-port", 300, &err));
  EXPECT_EQ(err.code, LinkError::kSetup);
}

TEST(TlsContext, RefusesMissingFilesAndMismatchedKey) {
  ASSERT_TRUE(Pki::get().ok());
  Pki& p = Pki::get();
  std::string err;
  EXPECT_FALSE(TlsContext::create(TlsContext::Role::kServer, p.path("nope.pem"), p.path("a.key"),
                                  p.path("ca.pem"), &err));
  EXPECT_NE(err.find("nope.pem"), std::string::npos) << err;
  EXPECT_FALSE(TlsContext::create(TlsContext::Role::kServer, p.path("a.pem"), p.path("b.key"),
                                  p.path("ca.pem"), &err));
  EXPECT_NE(err.find("b.key"), std::string::npos) << err;
}

}  // namespace
}  // namespace baton::migrate
