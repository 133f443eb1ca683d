// SPDX-License-Identifier: Apache-2.0
//
// Test certificates for the migration link: made with the openssl CLI in a temporary directory
// once per test binary, removed at exit.
#pragma once

#include <stdlib.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace baton::migrate {

// A CA, three instances it signed (a, b, and c: a legitimate peer that is neither of the two in
// a migration), and a rogue instance signed by an unrelated CA.
class Pki {
 public:
  static Pki& get() {
    static Pki pki;
    return pki;
  }
  std::string path(const std::string& f) const { return dir_ + "/" + f; }
  bool ok() const { return ok_; }

 private:
  Pki() {
    char tmpl[] = "/tmp/baton-migrate-pki-XXXXXX";
    dir_ = mkdtemp(tmpl);
    std::ofstream(path("leaf.ext")) << "basicConstraints=CA:FALSE\n"
                                       "keyUsage=digitalSignature\n"
                                       "extendedKeyUsage=serverAuth,clientAuth\n";
    ok_ = make_ca("ca", "baton-test-ca") && make_ca("rogue-ca", "rogue-ca") &&
          make_leaf("a", "baton-a", "ca") && make_leaf("b", "baton-b", "ca") &&
          make_leaf("c", "baton-c", "ca") &&
          make_leaf("rogue", "baton-rogue", "rogue-ca");
  }
  ~Pki() { std::system(("rm -rf '" + dir_ + "'").c_str()); }
  bool run(const std::string& cmd) {
    return std::system(("cd '" + dir_ + "' && " + cmd + " >/dev/null 2>&1").c_str()) == 0;
  }
  bool make_ca(const std::string& name, const std::string& cn) {
    return run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
               "-keyout " + name + ".key -out " + name + ".pem -days 2 -subj /CN=" + cn);
  }
  bool make_leaf(const std::string& name, const std::string& cn, const std::string& ca) {
    return run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " +
               name + ".key -out " + name + ".csr -subj /CN=" + cn) &&
           run("openssl x509 -req -in " + name + ".csr -CA " + ca + ".pem -CAkey " + ca +
               ".key -CAcreateserial -days 2 -extfile leaf.ext -out " + name + ".pem");
  }
  std::string dir_;
  bool ok_ = false;
};

}  // namespace baton::migrate
