package connectors

import (
	"errors"
	"fmt"
)

// SigningCredential is the `signing:` block of a connector's configuration
// file: the credential Lethe issued for the system (POST
// /v1/systems/{name}/credentials). The key id is not secret and sits in the
// file; the secret comes from an environment variable, like SASL's
// password. The reference connectors share it; a service with a file of
// its own may embed it too.
type SigningCredential struct {
	// KeyID is the credential's key_id.
	KeyID string `yaml:"key_id"`
	// SecretEnv names the environment variable holding the credential's
	// secret, as hex.
	SecretEnv string `yaml:"secret_env"`
}

// Validate reports the first problem of s, naming its key in the file. A
// nil block is valid: Run then falls back to LETHE_CONNECTOR_KEY_ID and
// LETHE_CONNECTOR_SECRET.
func (s *SigningCredential) Validate() error {
	switch {
	case s == nil:
		return nil
	case s.KeyID == "":
		return errors.New("signing.key_id is missing")
	case s.SecretEnv == "":
		return errors.New("signing.secret_env is missing")
	case !ValidEnvName(s.SecretEnv):
		return fmt.Errorf("signing.secret_env %q is not an environment variable name", s.SecretEnv)
	}
	return nil
}

// Build returns the key id and secret to put in Config.KeyID and
// Config.Secret, reading the secret from env; both empty for a nil block.
func (s *SigningCredential) Build(env func(string) string) (keyID, secret string, err error) {
	if s == nil {
		return "", "", nil
	}
	if err := s.Validate(); err != nil {
		return "", "", err
	}
	secret = env(s.SecretEnv)
	if secret == "" {
		return "", "", fmt.Errorf("environment variable $%s (signing.secret_env) is not set", s.SecretEnv)
	}
	if _, err := newSigner(s.KeyID, secret); err != nil {
		return "", "", fmt.Errorf("$%s (signing.secret_env): the secret must be hex of at least %d bytes", s.SecretEnv, minSecretBytes)
	}
	return s.KeyID, secret, nil
}
