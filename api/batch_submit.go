package api

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/wire"
)

// Bounds of a bulk erasure's submission.
const (
	// MaxBatchBodyBytes bounds the body of POST /v1/erasure-batches, the
	// one route allowed more than MaxBodyBytes: 100,000 subjects of a few
	// identifiers each fit with room to spare.
	MaxBatchBodyBytes = 64 << 20
	// MaxBatchLineBytes bounds one NDJSON line, as MaxBodyBytes bounds the
	// body of POST /v1/erasures: every subject that route takes fits.
	MaxBatchLineBytes = MaxBodyBytes
	// MaxBadLines is how many faulty lines an invalid_batch answer names;
	// its message counts them all.
	MaxBadLines = 20
)

// The media types of a bulk erasure's body.
const (
	mediaNDJSON = "application/x-ndjson"
	mediaJSON   = "application/json"
)

// batchParams are a submission's fields besides its subjects: in the JSON
// body, or in the query string of an NDJSON one.
type batchParams struct {
	Reason      string
	RequestedBy string
	DryRun      bool
	// Policy and Deadline choose the deadline as for POST /v1/erasures.
	Policy   string
	Deadline *time.Time
}

// batchWindow decides a batch's deadline as window decides a request's.
func (s *Server) batchWindow(p batchParams, created time.Time) (time.Time, error) {
	deadline, _, err := s.window(erasureRequest{Policy: p.Policy, Deadline: p.Deadline}, created)
	return deadline, err
}

// checkParams checks the notes, the policy and the deadline, so that an
// NDJSON submission with a bad query is refused before its body is read.
func (s *Server) checkParams(p batchParams) error {
	if err := maxChars("reason", p.Reason, MaxNoteChars); err != nil {
		return err
	}
	if err := maxChars("requested_by", p.RequestedBy, MaxNoteChars); err != nil {
		return err
	}
	_, err := s.batchWindow(p, s.now().UTC().Truncate(time.Microsecond))
	return err
}

// batchQuery reads the parameters of an NDJSON submission from its query
// string. Any other parameter is refused, so that a misspelt dry_run never
// erases for real.
func batchQuery(q url.Values) (batchParams, error) {
	var p batchParams
	for k, vs := range q {
		known := slices.Contains([]string{"reason", "requested_by", "policy", "dry_run", "deadline"}, k)
		switch {
		case !known && fieldNameRe.MatchString(k):
			return p, invalid("unknown_parameter", "unknown query parameter %q", k)
		case !known:
			return p, invalid("unknown_parameter", "the query has an unknown parameter")
		case len(vs) != 1:
			return p, invalid("invalid_parameter", "query parameter %s must be given once", k)
		}
		v := vs[0]
		switch k {
		case "reason":
			p.Reason = v
		case "requested_by":
			p.RequestedBy = v
		case "policy":
			p.Policy = v
		case "dry_run":
			if v != "true" && v != "false" {
				return p, invalid("invalid_parameter", "dry_run must be true or false")
			}
			p.DryRun = v == "true"
		case "deadline":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return p, invalid("invalid_deadline", "deadline must be an RFC 3339 time")
			}
			p.Deadline = &t
		}
	}
	return p, nil
}

// batchReader collects a submission's entries as they are read, so that
// neither form ever holds the raw body: each entry's identifiers, sorted,
// and the number of its line. Once an entry is faulty the batch is
// refused whatever follows, so the reader stops keeping entries and only
// counts and numbers the faulty ones.
type batchReader struct {
	entries [][]wire.Identifier
	lines   []int32
	// n counts entries, faulty or not; unit names them in messages.
	n    int
	unit string
	// bad holds the first MaxBadLines faulty line numbers, badCount all of
	// them, first why the first one is faulty.
	bad      []int
	badCount int
	first    error
	// hash is SHA-256 over the canonical submission (see canonical).
	hash hash.Hash
	num  []byte
}

func newBatchReader(unit string) *batchReader {
	return &batchReader{unit: unit, hash: sha256.New()}
}

// add takes the entry of a line: its subject, or why it cannot be one.
// More than lethe.MaxBatchSubjects entries is an error at once, so that a
// body of a million lines is not read to its end.
func (b *batchReader) add(line int, subject map[string]string, err error) error {
	b.n++
	if b.n > lethe.MaxBatchSubjects {
		return lethe.Errorf(lethe.KindTooLarge, "too_many_subjects",
			"a batch takes at most %d subjects; this one has more", lethe.MaxBatchSubjects)
	}
	if err == nil {
		if verr := (erasureRequest{Subject: subject}).validateSubject(); verr != nil {
			err = fmt.Errorf("%s %d: %w", b.unit, line, verr)
		}
	}
	if err != nil {
		b.fault(line, err)
		return nil
	}
	if b.badCount > 0 {
		return nil
	}
	ids := erasureRequest{Subject: subject}.subject()
	b.entries = append(b.entries, ids)
	b.lines = append(b.lines, int32(line))
	b.writeNum('e', len(ids))
	for _, id := range ids {
		b.writeString(id.Type)
		b.writeString(id.Value)
	}
	return nil
}

// fault records a faulty line. Its reason is a *lethe.Error whose message
// names types and positions only, never a value, wrapped with the line's
// number where the message does not name it.
func (b *batchReader) fault(line int, err error) {
	if b.badCount == 0 {
		b.first = err
		b.entries, b.lines = nil, nil
	}
	b.badCount++
	if len(b.bad) < MaxBadLines {
		b.bad = append(b.bad, line)
	}
}

// refusal is the invalid_batch error of a submission with faulty lines,
// nil when it has none.
func (b *batchReader) refusal() error {
	if b.badCount == 0 {
		return nil
	}
	why := b.first.Error()
	var le *lethe.Error
	if errors.As(b.first, &le) {
		// The number and the message, without the code.
		why = strings.Replace(why, le.Error(), le.Message, 1)
	}
	verb := "is"
	if b.badCount > 1 {
		verb = "are"
	}
	return &linesError{
		err: lethe.Errorf(lethe.KindInvalid, "invalid_batch",
			"%s of the batch %s invalid, so none was recorded; the first: %s",
			b.count(b.badCount), verb, why),
		lines: b.bad,
	}
}

// count says n lines or entries, as English does.
func (b *batchReader) count(n int) string {
	if n == 1 {
		return "1 " + b.unit
	}
	return strconv.Itoa(n) + " " + b.units()
}

func (b *batchReader) units() string {
	if b.unit == "entry" {
		return "entries"
	}
	return b.unit + "s"
}

// canonical returns the hex SHA-256 of the submission in a form that
// neither its encoding nor the order of identifiers within an entry
// changes: each entry in order, as its count of identifiers then each
// identifier's type and value sorted, then the parameters, every string
// length-prefixed. An NDJSON and a JSON body of the same batch hash alike.
func (b *batchReader) canonical(p batchParams) string {
	b.writeString(p.Reason)
	b.writeString(p.RequestedBy)
	b.writeString(strconv.FormatBool(p.DryRun))
	b.writeString(p.Policy)
	deadline := ""
	if p.Deadline != nil {
		deadline = p.Deadline.UTC().Format(time.RFC3339Nano)
	}
	b.writeString(deadline)
	return hex.EncodeToString(b.hash.Sum(nil))
}

func (b *batchReader) writeNum(tag byte, n int) {
	b.num = append(b.num[:0], tag)
	b.num = strconv.AppendInt(b.num, int64(n), 10)
	b.num = append(b.num, ':')
	b.hash.Write(b.num)
}

func (b *batchReader) writeString(s string) {
	b.writeNum('s', len(s))
	io.WriteString(b.hash, s)
}

// batchLine is one line of an NDJSON submission, the shape of the subject
// field of POST /v1/erasures.
type batchLine struct {
	Subject map[string]string `json:"subject"`
}

// readNDJSON reads an NDJSON body line by line: every line is decoded on
// its own, so a faulty one is numbered and the next read. Blank lines are
// skipped but keep their number, so the numbers are an editor's.
func readNDJSON(body io.Reader, b *batchReader) error {
	br := bufio.NewReaderSize(body, 64<<10)
	var buf []byte
	for n := 1; ; n++ {
		line, tooLong, err := readLine(br, buf[:0])
		buf = line
		if err != nil && err != io.EOF {
			return bodyError(err)
		}
		if text := bytes.TrimSpace(line); len(text) > 0 || tooLong {
			var entry batchLine
			var lerr error
			what := "line " + strconv.Itoa(n)
			if tooLong {
				lerr = invalid("line_too_long", "%s is longer than %d bytes", what, MaxBatchLineBytes)
			} else {
				lerr = decodeOne(bytes.NewReader(text), &entry, what)
			}
			if aerr := b.add(n, entry.Subject, lerr); aerr != nil {
				return aerr
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}

// readLine reads the next line into buf, without keeping more than
// MaxBatchLineBytes of it: tooLong tells that the rest was skipped. It
// answers io.EOF with the body's last line when that has no newline.
func readLine(br *bufio.Reader, buf []byte) (line []byte, tooLong bool, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)+len(frag) <= MaxBatchLineBytes {
			buf = append(buf, frag...)
		} else {
			tooLong = true
		}
		if err != bufio.ErrBufferFull {
			return buf, tooLong, err
		}
	}
}

// bodyError classifies an error reading the body: cut at its limit, or
// ended before its end (the client went away).
func bodyError(err error) error {
	if tooLarge(err) {
		return bodyTooLarge(err)
	}
	return joinKind(lethe.Errorf(lethe.KindInvalid, "invalid_json", "the request body could not be read to its end"), err)
}

// readBatchJSON reads a JSON body token by token, so that its subjects are
// taken one at a time as NDJSON lines are, numbered by their position in
// "subjects". A syntax error ends the reading: past it, nothing can be
// told apart.
func readBatchJSON(body io.Reader, b *batchReader) (batchParams, error) {
	var p batchParams
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if tok, err := dec.Token(); err != nil {
		return p, jsonError(err)
	} else if tok != json.Delim('{') {
		return p, invalid("invalid_json", "the request body must be a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return p, jsonError(err)
		}
		key, _ := tok.(string)
		if seen[key] { // only a known field can come twice: others end the reading
			return p, invalid("invalid_json", "field %q appears twice", key)
		}
		seen[key] = true
		switch key {
		case "subjects":
			err = readSubjects(dec, b)
		case "reason":
			err = decodeField(dec, key, &p.Reason)
		case "requested_by":
			err = decodeField(dec, key, &p.RequestedBy)
		case "dry_run":
			err = decodeField(dec, key, &p.DryRun)
		case "policy":
			err = decodeField(dec, key, &p.Policy)
		case "deadline":
			var raw json.RawMessage
			if err = decodeField(dec, key, &raw); err == nil && string(raw) != "null" {
				p.Deadline = new(time.Time)
				if json.Unmarshal(raw, p.Deadline) != nil {
					err = invalid("invalid_deadline", "deadline must be an RFC 3339 time")
				}
			}
		default:
			if fieldNameRe.MatchString(key) {
				err = invalid("unknown_field", "unknown field %q", key)
			} else {
				err = invalid("unknown_field", "the request body has an unknown field")
			}
		}
		if err != nil {
			return p, err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return p, jsonError(err)
	}
	switch _, err := dec.Token(); {
	case err == io.EOF:
		return p, nil
	case tooLarge(err):
		return p, bodyTooLarge(err)
	default:
		return p, invalid("invalid_json", "the request body must hold exactly one JSON value")
	}
}

// readSubjects reads the "subjects" array, one entry at a time. An entry
// of the wrong type is a faulty entry; the decoder has read past it.
func readSubjects(dec *json.Decoder, b *batchReader) error {
	tok, err := dec.Token()
	switch {
	case err != nil:
		return jsonError(err)
	case tok == nil:
		return nil
	case tok != json.Delim('['):
		return invalid("invalid_json", "subjects must be an array of subjects")
	}
	for n := 1; dec.More(); n++ {
		var subject map[string]string
		err := dec.Decode(&subject)
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typ):
			err = invalid("invalid_subject", "entry %d must be an object whose values are strings", n)
		case err != nil:
			return jsonError(err)
		}
		if aerr := b.add(n, subject, err); aerr != nil {
			return aerr
		}
	}
	_, err = dec.Token() // the closing bracket
	if err != nil {
		return jsonError(err)
	}
	return nil
}

// decodeField decodes one field's value, naming the field when its JSON
// type is wrong.
func decodeField(dec *json.Decoder, key string, v any) error {
	err := dec.Decode(v)
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		kind, _, _ := strings.Cut(typ.Value, " ")
		return invalid("invalid_json", "field %s must not be a JSON %s", key, kind)
	}
	if err != nil {
		return jsonError(err)
	}
	return nil
}
