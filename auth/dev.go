package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DevTokenPrefix starts a generated dev token. It also starts with
// TokenPrefix, so secret scanners that know Lethe tokens find it too.
const DevTokenPrefix = "lethe_dev_"

// DevTokenFile is the file in `lethe dev`'s data folder that keeps the
// generated dev token, so that it survives a restart.
const DevTokenFile = "dev-token"

// DevVerifier accepts the one dev token of `lethe dev` as the principal
// "dev" with every scope. It exists so that a developer can call the API
// of a laptop setup without creating tokens; `lethe api` never uses it.
type DevVerifier struct {
	token []byte
}

// NewDevVerifier returns a verifier for token, which must not be empty.
func NewDevVerifier(token string) (*DevVerifier, error) {
	if token == "" {
		return nil, errors.New("the dev token is empty")
	}
	if !Token68(token) {
		return nil, errors.New("the dev token must be letters, digits and - . _ ~ + / = only, to travel in an Authorization header")
	}
	return &DevVerifier{token: []byte(token)}, nil
}

// Matches reports, in constant time, whether credential is the dev token.
func (d *DevVerifier) Matches(credential string) bool {
	return subtle.ConstantTimeCompare([]byte(credential), d.token) == 1
}

// Verify accepts the dev token and refuses everything else.
func (d *DevVerifier) Verify(_ context.Context, credential string) (Principal, error) {
	if !d.Matches(credential) {
		return Principal{}, refuse("not the dev token")
	}
	return Principal{Subject: "dev", Kind: KindDev, Scopes: append([]Scope(nil), AllScopes...)}, nil
}

var _ Verifier = (*DevVerifier)(nil)

// DevToken returns the dev token of `lethe dev`: fromEnv when it is set
// (LETHE_DEV_TOKEN, read by the caller), else the token kept in
// <dataDir>/dev-token, else a new one, written there with mode 0600 so the
// next start keeps it. An ephemeral setup (dataDir empty) gets a new token
// each start. generated tells the caller to print it.
func DevToken(fromEnv, dataDir string) (token string, generated bool, err error) {
	if fromEnv != "" {
		return fromEnv, false, nil
	}
	if dataDir == "" {
		t, err := newDevToken()
		return t, err == nil, err
	}
	path := filepath.Join(dataDir, DevTokenFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil && strings.TrimSpace(string(b)) != "":
		return strings.TrimSpace(string(b)), false, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return "", false, fmt.Errorf("read dev token: %w", err)
	}
	t, err := newDevToken()
	if err != nil {
		return "", false, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", false, fmt.Errorf("write dev token: %w", err)
	}
	// Written to a private temporary file and renamed, so the token is
	// never readable by others, not even for a moment, and a crash leaves
	// no half-written file.
	tmp, err := os.CreateTemp(dataDir, DevTokenFile+".*")
	if err != nil {
		return "", false, fmt.Errorf("write dev token: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(t + "\n"); err != nil {
		tmp.Close()
		return "", false, fmt.Errorf("write dev token: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", false, fmt.Errorf("write dev token: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return "", false, fmt.Errorf("write dev token: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", false, fmt.Errorf("write dev token: %w", err)
	}
	return t, true, nil
}

func newDevToken() (string, error) {
	var b [tokenBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate dev token: %w", err)
	}
	return DevTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}
