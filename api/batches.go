package api

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/certificate"
	"github.com/lethe-dev/lethe/certificate/merkle"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// Bounds of the listing of a batch's subjects.
const (
	DefaultBatchSubjectLimit = 100
	MaxBatchSubjectLimit     = 1000
)

// batchUploadWindow is how long POST /v1/erasure-batches gives a client to
// send its body and get its answer: 64 MiB takes longer than the server's
// read and write timeouts allow the other routes.
const batchUploadWindow = 5 * time.Minute

// digestRe is the form of a keyed digest (digest.Digester.Sum).
var digestRe = regexp.MustCompile(`^[0-9a-f]{64}$`)

// batchList and batchSubjectList are the bodies of the batch listings.
type batchList struct {
	Items      []lethe.Batch `json:"items"`
	NextCursor string        `json:"next_cursor,omitempty"`
}

type batchSubjectList struct {
	Items      []lethe.BatchSubject `json:"items"`
	NextCursor string               `json:"next_cursor,omitempty"`
}

// batchNotFound answers ids that cannot name a batch without asking the
// store, as erasureNotFound does requests'.
func batchNotFound() error {
	return lethe.Errorf(lethe.KindNotFound, "batch_not_found", "no batch has this id")
}

// createBatch takes a bulk erasure. The body is read as it arrives, each
// subject validated as POST /v1/erasures validates one; a faulty one
// refuses the whole batch before anything is written. The subjects are
// then merged, digested for the ledger and cut into chunks for the
// workflow, which starts before the ledger commits, as a request's does.
func (s *Server) createBatch(w http.ResponseWriter, r *http.Request) {
	key, err := idempotencyKey(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	mt, err := mediaType(r.Header.Get("Content-Type"), mediaNDJSON, mediaJSON)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if r.ContentLength > MaxBatchBodyBytes {
		// Said up front: refused before a byte of it is read.
		s.writeError(w, r, bodyTooLarge(&http.MaxBytesError{Limit: MaxBatchBodyBytes}))
		return
	}
	// Best effort: a writer that cannot (a test's recorder) keeps its own.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(batchUploadWindow))
	_ = rc.SetWriteDeadline(time.Now().Add(batchUploadWindow))

	p, br, err := s.readSubmission(r, http.MaxBytesReader(w, r.Body, MaxBatchBodyBytes), mt)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	hash := br.canonical(p)
	subjects, err := br.merge()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	in, input, chunks, err := s.newBatch(p, subjects, br.n-len(subjects), key, hash)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	in.CreatedBy = actorOf(r)
	start := func(ctx context.Context) error { return s.engine.StartBatch(ctx, input, chunks) }
	b, created, err := s.store.CreateBatch(r.Context(), in, start)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusAccepted
		w.Header().Set("Location", "/v1/erasure-batches/"+b.ID)
	} else {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, status, showBatch(b))
}

// readSubmission reads a batch in the form mt names: its parameters and
// its entries, every one valid, at least one.
func (s *Server) readSubmission(r *http.Request, body io.Reader, mt string) (batchParams, *batchReader, error) {
	var (
		p   batchParams
		br  *batchReader
		err error
	)
	switch {
	case mt == mediaNDJSON:
		if p, err = batchQuery(r.URL.Query()); err != nil {
			return p, nil, err
		}
		if err = s.checkParams(p); err != nil {
			return p, nil, err
		}
		br = newBatchReader("line")
		err = readNDJSON(body, br)
	case len(r.URL.Query()) > 0:
		return p, nil, invalid("unknown_parameter", "a JSON batch takes its fields in the body, not in the query")
	default:
		br = newBatchReader("entry")
		if p, err = readBatchJSON(body, br); err == nil {
			err = s.checkParams(p)
		}
	}
	if err == nil {
		err = br.refusal()
	}
	if err == nil && br.n == 0 {
		err = invalid("empty_batch", "the batch has no subject")
	}
	return p, br, err
}

// maxChunkBytes bounds the identifier values one chunk carries through
// Temporal (its signal, then its workflow's input), well under the 2 MiB a
// payload may be: a chunk holds at most workflows.ChunkSize subjects, fewer
// when their values are long.
const maxChunkBytes = 256 << 10

// chunkBytes estimates what one subject adds to a chunk's encoded payload.
func chunkBytes(sub batchSubject) int {
	n := 100 // item, item_id and the JSON around them
	for _, idf := range sub.ids {
		n += 32 + len(idf.Type) + 2*len(idf.Value) // escaping may double a value
	}
	return n
}

// newBatch builds what the ledger records (digests only) and what the
// workflow is handed (the values, a chunk at a time). Subject i is item i;
// chunks take the subjects in order, at most workflows.ChunkSize and
// maxChunkBytes each. The request hash and the idempotency key are kept as
// keyed digests, as newErasure keeps a request's.
func (s *Server) newBatch(p batchParams, subjects []batchSubject, duplicates int, key, hash string) (
	registry.NewBatch, workflows.BatchInput, []workflows.BatchChunk, error) {
	id := uuid.NewString()
	created := s.now().UTC().Truncate(time.Microsecond)
	deadline, err := s.batchWindow(p, created)
	if err != nil {
		return registry.NewBatch{}, workflows.BatchInput{}, nil, err
	}
	if key != "" {
		key = s.digester.Sum("idempotency_key", key)
	}
	in := registry.NewBatch{
		ID:             id,
		Subjects:       make([]registry.NewBatchSubject, len(subjects)),
		Duplicates:     duplicates,
		Reason:         p.Reason,
		RequestedBy:    p.RequestedBy,
		DryRun:         p.DryRun,
		IdempotencyKey: key,
		RequestHash:    s.digester.Sum("batch_request", hash),
		CreatedAt:      created,
		Deadline:       deadline,
		WorkflowID:     workflows.BatchWorkflowID(id),
	}
	var chunks []workflows.BatchChunk
	size := 0
	types := map[string]bool{}
	for i, sub := range subjects {
		b := chunkBytes(sub)
		if n := len(chunks); n == 0 || len(chunks[n-1].Subjects) == workflows.ChunkSize || size+b > maxChunkBytes {
			chunkID := uuid.NewString()
			in.Chunks = append(in.Chunks, registry.BatchChunkRef{Chunk: n, ID: chunkID})
			chunks = append(chunks, workflows.BatchChunk{Chunk: n, ChunkID: chunkID})
			size = 0
		}
		size += b
		c := len(chunks) - 1
		itemID := uuid.NewString()
		digests := make([]lethe.SubjectDigest, len(sub.ids))
		for j, idf := range sub.ids {
			digests[j] = lethe.SubjectDigest{Type: idf.Type, Digest: s.digester.Sum(idf.Type, idf.Value)}
			types[idf.Type] = true
		}
		in.Subjects[i] = registry.NewBatchSubject{Item: i, ItemID: itemID, Chunk: c, Digests: digests}
		chunks[c].Subjects = append(chunks[c].Subjects, workflows.BatchSubject{Item: i, ItemID: itemID, Identifiers: sub.ids})
	}
	n := len(chunks)
	in.SubjectTypes = slices.Sorted(maps.Keys(types))
	input := workflows.BatchInput{
		BatchID:   id,
		Chunks:    n,
		Total:     len(subjects),
		DryRun:    p.DryRun,
		CreatedAt: created,
		Deadline:  deadline,
		// The chunks derive their command_ids from this secret, as a
		// request's workflow does from ErasureInput.CommandSeed.
		CommandSeed: rand.Text(),
	}
	return in, input, chunks, nil
}

// showBatch fills nil lists so every answer has the documented arrays.
func showBatch(b lethe.Batch) lethe.Batch {
	if b.SubjectTypes == nil {
		b.SubjectTypes = []string{}
	}
	if b.Systems == nil {
		b.Systems = []lethe.BatchSystemCounts{}
	}
	return b
}

func showBatchSubject(b lethe.BatchSubject) lethe.BatchSubject {
	if b.Identifiers == nil {
		b.Identifiers = []lethe.SubjectDigest{}
	}
	if b.Systems == nil {
		b.Systems = []lethe.SystemProgress{}
	}
	return b
}

func (s *Server) getBatch(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !wire.ValidID(id) {
		s.writeError(w, r, batchNotFound())
		return
	}
	b, err := s.store.GetBatch(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, showBatch(b))
}

func (s *Server) listBatches(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	status, limit, err := listQuery(q, DefaultListLimit, MaxListLimit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	items, next, err := s.store.ListBatches(r.Context(), registry.BatchFilter{Status: status, Limit: limit, Cursor: q.Get("cursor")})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := batchList{Items: make([]lethe.Batch, 0, len(items)), NextCursor: next}
	for _, b := range items {
		out.Items = append(out.Items, showBatch(b))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listBatchSubjects(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !wire.ValidID(id) {
		s.writeError(w, r, batchNotFound())
		return
	}
	q := r.URL.Query()
	status, limit, err := listQuery(q, DefaultBatchSubjectLimit, MaxBatchSubjectLimit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f := registry.BatchSubjectFilter{BatchID: id, Status: status, Limit: limit, Cursor: q.Get("cursor")}
	items, next, err := s.store.ListBatchSubjects(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := batchSubjectList{Items: make([]lethe.BatchSubject, 0, len(items)), NextCursor: next}
	for _, b := range items {
		out.Items = append(out.Items, showBatchSubject(b))
	}
	writeJSON(w, http.StatusOK, out)
}

// cancelBatch stops a batch as cancelErasure stops a request: audited
// first, then the workflow canceled, then the batch read again.
func (s *Server) cancelBatch(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !wire.ValidID(id) {
		s.writeError(w, r, batchNotFound())
		return
	}
	read := func(ctx context.Context) (lethe.Batch, lethe.RequestStatus, error) {
		b, err := s.store.GetBatch(ctx, id)
		return b, b.Status, err
	}
	audit := func(ctx context.Context) error { return s.store.AuditBatchCancel(ctx, id, actorOf(r)) }
	stop := func(ctx context.Context) error { return s.engine.CancelBatch(ctx, id) }
	b, err := cancelAndRead(r.Context(), read, audit, stop)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, showBatch(b))
}

// retryBatch reopens a batch's failed subjects: the ledger records who
// asked and which systems, and the workflow is told before it commits.
func (s *Server) retryBatch(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !wire.ValidID(id) {
		s.writeError(w, r, batchNotFound())
		return
	}
	systems, err := retrySystems(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	actor := actorOf(r)
	notify := func(ctx context.Context) error {
		return s.engine.RetryBatch(ctx, id, workflows.RetrySignal{Actor: actor, Systems: systems})
	}
	b, err := s.store.RetryBatch(r.Context(), id, actor, systems, notify)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, showBatch(b))
}

// getBatchCertificate answers a finished batch's certificate, as
// getCertificate answers a request's.
func (s *Server) getBatchCertificate(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !wire.ValidID(id) {
		s.writeError(w, r, batchNotFound())
		return
	}
	doc, err := s.batchCertificate(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeFile(w, "erasure-batch-"+id+".certificate.json", doc)
}

// batchCertificate returns the stored certificate of the batch, or issues,
// signs and stores one and returns what is then stored: should two
// replicas issue at once, both answer the first one kept, as
// certificate.Issuer does for requests.
func (s *Server) batchCertificate(ctx context.Context, id string) ([]byte, error) {
	doc, found, err := s.store.GetBatchCertificate(ctx, id)
	if err != nil || found {
		return doc, err
	}
	b, err := s.store.GetBatch(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.settled(b); err != nil {
		return nil, err
	}
	facts, err := s.store.BatchCertificateFacts(ctx, id)
	if err != nil {
		return nil, err
	}
	c, err := certificate.BuildBatch(facts, s.now())
	if err != nil {
		return nil, err
	}
	signer := s.issuer.Signer
	if signer == nil {
		return nil, lethe.Errorf(lethe.KindUnavailable, "signing_key_missing",
			"no certificate was issued for this batch yet and LETHE_SIGNING_KEY is not configured")
	}
	if doc, err = signer.SignBatch(c); err != nil {
		return nil, err
	}
	if err := s.store.PutBatchCertificate(ctx, id, doc); err != nil {
		return nil, err
	}
	stored, found, err := s.store.GetBatchCertificate(ctx, id)
	switch {
	case err != nil:
		return nil, err
	case !found:
		return nil, fmt.Errorf("batch certificate of %s not found once stored", id)
	}
	return stored, nil
}

// settled refuses to certify a batch that may still change: one not
// finished, and one that failed while a retry can still change its
// subjects' outcomes (until its deadline, when its workflows end). A
// certificate is stored as first issued, and proofs are made from the
// ledger as it stands: both must describe the same, final, batch.
func (s *Server) settled(b lethe.Batch) error {
	switch {
	case !b.Status.Final():
		return lethe.Errorf(lethe.KindConflict, "not_finished",
			"the batch has not finished (status %s); its certificate and proofs are given once it has", b.Status)
	case b.Status == lethe.RequestFailed && s.now().Before(b.Deadline):
		return lethe.Errorf(lethe.KindConflict, "still_retryable",
			"the batch failed and can be retried until its deadline, %s; its certificate and proofs are given once it completes, or after that",
			b.Deadline.UTC().Format(time.RFC3339))
	}
	return nil
}

// getBatchProof answers the inclusion proof of one subject of a finished
// batch, found by the keyed digest of any of its identifiers: its leaf and
// the hashes that lead from it to the root the batch certificate signs.
func (s *Server) getBatchProof(w http.ResponseWriter, r *http.Request) {
	id, digest := r.PathValue("id"), r.PathValue("digest")
	if !wire.ValidID(id) {
		s.writeError(w, r, batchNotFound())
		return
	}
	if !digestRe.MatchString(digest) {
		s.writeError(w, r, subjectNotFound())
		return
	}
	doc, err := s.batchProof(r.Context(), id, digest)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeFile(w, "erasure-batch-"+id+".proof.json", doc)
}

func subjectNotFound() error {
	return lethe.Errorf(lethe.KindNotFound, "subject_not_found", "no subject of the batch has an identifier with this digest")
}

func (s *Server) batchProof(ctx context.Context, id, digest string) ([]byte, error) {
	b, err := s.store.GetBatch(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.settled(b); err != nil {
		return nil, err
	}
	item, err := s.store.BatchSubjectByDigest(ctx, id, digest)
	if err != nil {
		return nil, err
	}
	leaves, err := s.store.BatchLeaves(ctx, id)
	if err != nil {
		return nil, err
	}
	if item < 0 || item >= len(leaves) {
		return nil, fmt.Errorf("batch %s: subject item %d outside %d leaves", id, item, len(leaves))
	}
	hashes := make([]merkle.Hash, len(leaves))
	for i, l := range leaves {
		if hashes[i], err = certificate.LeafHash(l); err != nil {
			return nil, fmt.Errorf("batch %s: leaf %d: %w", id, i, err)
		}
	}
	p, err := merkle.NewTree(hashes).Proof(uint64(item))
	if err != nil {
		return nil, err
	}
	proof, err := certificate.NewProof(id, leaves[item], p)
	if err != nil {
		return nil, err
	}
	return certificate.EncodeProof(proof)
}
