package auth

// refusal is a refused credential: it matches ErrUnauthenticated and says
// why in words safe to log, never quoting the credential.
type refusal struct{ reason string }

func (r *refusal) Error() string { return ErrUnauthenticated.Error() + ": " + r.reason }

// Is makes errors.Is(err, ErrUnauthenticated) hold, so the API answers 401.
func (r *refusal) Is(target error) bool { return target == ErrUnauthenticated }

func refuse(reason string) error { return &refusal{reason: reason} }
