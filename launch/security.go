package launch

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/torusml/torus/parallel"
)

// Security is how a job's workers trust each other. Every gRPC stream of the
// ring is mutual TLS 1.3 (parallel/tls.go), its CA either derived from the
// cluster secret or a site's own; plaintext needs Insecure, and then every
// address must be loopback.
//
//   - Secret (TORUS_CLUSTER_KEY or --key-file): the gossip key (memberlist's
//     AES-GCM), the gRPC token, and, unless the TLS files are given, the
//     job's TLS CA (parallel.DeriveTLS): every worker derives the same CA
//     and issues itself a fresh certificate at start.
//   - TLSCert, TLSKey, TLSCA (--tls-cert, --tls-key, --tls-ca): a site's own
//     PKI, this worker's certificate and key and the CA every worker's
//     certificate chains to (parallel.LoadTLS). Without a Secret too, gossip
//     is neither encrypted nor authenticated: a stranger can disturb the
//     membership, though it cannot open a stream.
//   - Insecure (--insecure): plaintext streams and gossip, allowed only when
//     every address is loopback, and not together with a Secret or TLS files.
//
// torus train starts its local workers with a fresh random secret of the run
// (NewSecret, in TORUS_CLUSTER_KEY in their environment), so their streams
// are mutual TLS too.
type Security struct {
	Secret                 []byte
	TLSCert, TLSKey, TLSCA string
	Insecure               bool
}

// SecretEnv is the environment variable that holds the cluster secret.
const SecretEnv = "TORUS_CLUSTER_KEY"

// ErrNoSecret is the error of a job with neither a cluster secret, nor TLS
// files, nor --insecure.
var ErrNoSecret = errors.New("no cluster secret: set " + SecretEnv + " or --key-file FILE, the same on every node " +
	"(for example: head -c 32 /dev/urandom | base64 > torus.key), or give a site's certificates with " +
	"--tls-cert, --tls-key and --tls-ca; --insecure runs plaintext streams, on loopback only")

// siteTLS says whether any of the TLS files is given.
func (s Security) siteTLS() bool { return s.TLSCert != "" || s.TLSKey != "" || s.TLSCA != "" }

// Check says whether s can secure a job whose workers listen and meet on
// addrs (HOST:PORT or HOST; empty ones are skipped), naming what is wrong and
// how to fix it.
func (s Security) Check(addrs ...string) error {
	switch {
	case s.Insecure && s.Secret != nil:
		return errors.New("--insecure with a cluster secret (" + SecretEnv + " or --key-file): choose one (unset " + SecretEnv + " to run plaintext)")
	case s.Insecure && s.siteTLS():
		return errors.New("--insecure with --tls-cert, --tls-key or --tls-ca: choose one")
	case s.Insecure:
		for _, a := range addrs {
			if a != "" && !parallel.IsLoopback(a) {
				return fmt.Errorf("--insecure: %s is not a loopback address: plaintext is allowed on loopback only; "+
					"across machines set a cluster secret (%s or --key-file) or --tls-cert, --tls-key and --tls-ca", a, SecretEnv)
			}
		}
		return nil
	case s.siteTLS():
		var missing []string
		for _, f := range [][2]string{{"--tls-cert", s.TLSCert}, {"--tls-key", s.TLSKey}, {"--tls-ca", s.TLSCA}} {
			if f[1] == "" {
				missing = append(missing, f[0])
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("a site's certificates need --tls-cert, --tls-key and --tls-ca together; missing %v", missing)
		}
		return nil
	case s.Secret == nil:
		return ErrNoSecret
	}
	return nil
}

// TLS returns this worker's TLS identity: the site's certificates where
// given, else a fresh certificate from the CA of the secret; nil when
// Insecure. It checks s first (without addresses).
func (s Security) TLS() (*parallel.TLSIdentity, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	switch {
	case s.Insecure:
		return nil, nil
	case s.siteTLS():
		return parallel.LoadTLS(s.TLSCert, s.TLSKey, s.TLSCA)
	}
	return parallel.DeriveTLS(s.Secret)
}

// Describe says, in a few words, how the streams are secured.
func (s Security) Describe() string {
	switch {
	case s.Insecure:
		return "plaintext (--insecure, loopback only)"
	case s.siteTLS() && s.Secret == nil:
		return fmt.Sprintf("mutual TLS 1.3 with the site's certificates (--tls-ca %s); gossip unencrypted: no cluster secret", s.TLSCA)
	case s.siteTLS():
		return fmt.Sprintf("mutual TLS 1.3 with the site's certificates (--tls-ca %s), encrypted gossip", s.TLSCA)
	}
	return "mutual TLS 1.3, CA derived from the cluster secret, encrypted gossip"
}

// keys are the gossip key and gRPC token of the secret (none without one).
func (s Security) keys() (gossip []byte, token string) {
	if s.Secret == nil {
		return nil, ""
	}
	return ClusterKeys(s.Secret)
}

// NewSecret returns a fresh random cluster secret (32 bytes, hex): what torus
// train gives its local workers, in their environment, for one run.
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make a cluster secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}
