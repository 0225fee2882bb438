package api

// MaxChunkBytes exposes maxChunkBytes to the package's external tests.
const MaxChunkBytes = maxChunkBytes
