package activities

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/wire"
)

// CredentialSource tells which systems were issued signing credentials and
// which of their key ids are valid at a time, newest first; a system never
// issued one is absent. registry.Store implements it with one query.
type CredentialSource interface {
	SystemCredentials(ctx context.Context, systems []string, at time.Time) (map[string][]string, error)
}

// sign adds the signature headers to the commands of msgs (whose systems
// are given in the same order) that go to a system with credentials,
// signed with its newest valid key over the value bytes as written. The
// credentials of every system of the wave are read in one query. A system
// with credentials is never sent an unsigned command, which its connector
// would dead-letter: when no key can sign (no valid key, no system key),
// the wave fails with a retryable error, and the request waits until an
// operator issues a credential or configures LETHE_SYSTEM_KEY.
func (a *Activities) sign(ctx context.Context, msgs []kafka.Message, systems []string) error {
	if a.Credentials == nil || len(msgs) == 0 {
		return nil
	}
	creds, err := a.Credentials.SystemCredentials(ctx, uniq(systems), a.now())
	if err != nil {
		return err
	}
	for i := range msgs {
		keys, has := creds[systems[i]]
		if !has {
			continue
		}
		if len(keys) == 0 {
			return lethe.Errorf(lethe.KindUnavailable, "no_valid_credential",
				"system %s has credentials but none is valid now: issue a new one", systems[i])
		}
		if a.SystemKey == nil {
			return lethe.Errorf(lethe.KindUnavailable, "system_key_missing",
				"system %s has credentials but the worker has no LETHE_SYSTEM_KEY to sign with", systems[i])
		}
		msgs[i].Headers = append(msgs[i].Headers,
			kafka.Header{Key: wire.HeaderKeyID, Value: []byte(keys[0])},
			kafka.Header{Key: wire.HeaderSignature, Value: []byte(wire.Sign(a.SystemKey.Secret(keys[0]), msgs[i].Value))})
	}
	return nil
}

func (a *Activities) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// uniq lists each of names once, in their first order.
func uniq(names []string) []string {
	seen := make(map[string]bool, len(names))
	out := make([]string, 0, len(names))
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}
