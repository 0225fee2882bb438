package auth

// Tracked returns how many principals l remembers, for tests of its memory.
func (l *Limiter) Tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
