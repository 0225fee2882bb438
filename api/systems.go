package api

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
)

// Bounds of a system's registration.
const (
	// MinConfirmWithin and MaxConfirmWithin bound confirm_within: shorter
	// would re-dispatch before a healthy service could answer, longer would
	// outlast any legal deadline.
	MinConfirmWithin = time.Minute
	MaxConfirmWithin = 8760 * time.Hour
	// MaxTextChars bounds owner and description.
	MaxTextChars = 1024
	// maxTopicChars keeps room for the dead-letter suffix within Kafka's
	// limit of 249 characters.
	maxTopicChars = 249 - len(wire.DLQSuffix)
)

var topicRe = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)

// systemRequest is the body of PUT /v1/systems/{name}. ConfirmWithin is a
// plain string so that a bad duration answers invalid_duration rather than
// a generic decoding error.
type systemRequest struct {
	Identifiers   []string `json:"identifiers"`
	Produces      []string `json:"produces"`
	Topic         string   `json:"topic"`
	Owner         string   `json:"owner"`
	Description   string   `json:"description"`
	ConfirmWithin string   `json:"confirm_within"`
	// Batch asks for batch commands for the subjects of bulk erasures.
	Batch bool `json:"batch"`
	// After names the systems this one is erased after.
	After []string `json:"after"`
	// Mode is "kafka" (the default) or "pull".
	Mode string `json:"mode"`
}

// systemList is the body of GET /v1/systems.
type systemList struct {
	Items []lethe.System `json:"items"`
}

// toSystem validates the request for a system whose name the caller has
// checked and returns the system to store, with the contract's defaults
// filled in and the type lists deduplicated and sorted.
func (req systemRequest) toSystem(name string) (lethe.System, error) {
	if len(req.Identifiers) == 0 {
		return lethe.System{}, invalid("invalid_identifiers", "identifiers must list at least one identifier type")
	}
	ids, err := identifierTypes("identifiers", req.Identifiers)
	if err != nil {
		return lethe.System{}, err
	}
	produces, err := identifierTypes("produces", req.Produces)
	if err != nil {
		return lethe.System{}, err
	}
	topic := req.Topic
	if topic == "" {
		topic = wire.DefaultTopic(name)
	}
	if err := checkTopic(topic); err != nil {
		return lethe.System{}, err
	}
	within := lethe.DefaultConfirmWithin
	if req.ConfirmWithin != "" {
		d, err := time.ParseDuration(req.ConfirmWithin)
		if err != nil || d < MinConfirmWithin || d > MaxConfirmWithin {
			return lethe.System{}, invalid("invalid_duration",
				"confirm_within must be a Go duration between %s and %s, such as \"72h\"", MinConfirmWithin, MaxConfirmWithin)
		}
		within = d
	}
	mode := lethe.ModeKafka
	if req.Mode != "" {
		mode = lethe.Mode(req.Mode)
	}
	switch {
	case !mode.Valid():
		return lethe.System{}, invalid("invalid_mode", "mode must be %q or %q", lethe.ModeKafka, lethe.ModePull)
	case mode == lethe.ModePull && req.Batch:
		return lethe.System{}, invalid("invalid_mode",
			"a pull-mode system leases single commands: batch must be false")
	}
	if err := maxChars("owner", req.Owner, MaxTextChars); err != nil {
		return lethe.System{}, err
	}
	if err := maxChars("description", req.Description, MaxTextChars); err != nil {
		return lethe.System{}, err
	}
	after, err := afterSystems(req.After)
	if err != nil {
		return lethe.System{}, err
	}
	return lethe.System{
		Name:          name,
		Identifiers:   ids,
		Produces:      produces,
		Topic:         topic,
		Owner:         req.Owner,
		Description:   req.Description,
		ConfirmWithin: lethe.Duration(within),
		Batch:         req.Batch,
		After:         after,
		Mode:          mode,
	}, nil
}

// afterSystems checks, deduplicates and sorts the names of after; the
// store checks that they are registered and close no cycle.
func afterSystems(in []string) ([]string, error) {
	if len(in) > lethe.MaxAfter {
		return nil, invalid("invalid_after", "after names more than %d systems", lethe.MaxAfter)
	}
	out := make([]string, 0, len(in))
	for i, name := range in {
		if !lethe.ValidSystemName(name) {
			return nil, invalid("invalid_after", "after[%d] is not a system name; names must match ^[a-z][a-z0-9_-]{0,62}$", i)
		}
		out = append(out, name)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func invalidName() error {
	return invalid("invalid_name", "a system name must match ^[a-z][a-z0-9_-]{0,62}$")
}

// identifierTypes checks, deduplicates and sorts a list of identifier
// types; it never returns nil, so the stored system shows [] and not null.
func identifierTypes(field string, in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for i, t := range in {
		if !lethe.ValidIdentifierType(t) {
			return nil, invalid("invalid_identifier_type",
				"%s[%d] is not an identifier type; types must match ^[a-z][a-z0-9_]{0,62}$", field, i)
		}
		out = append(out, t)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// checkTopic accepts Kafka's legal topic names, minus those Lethe uses for
// itself: the confirmations topic and any dead-letter topic, which a
// system's commands must never share.
func checkTopic(topic string) error {
	switch {
	case len(topic) > maxTopicChars || !topicRe.MatchString(topic) || topic == "." || topic == "..":
		return invalid("invalid_topic",
			"topic must be 1 to %d characters of a-z, A-Z, 0-9, '.', '_' and '-', and not \".\" or \"..\"", maxTopicChars)
	case topic == wire.ConfirmationsTopic || topic == wire.DLQTopic(wire.ConfirmationsTopic):
		return invalid("invalid_topic", "topic %s is reserved for confirmations; name another topic", topic)
	case strings.HasSuffix(topic, wire.DLQSuffix):
		return invalid("invalid_topic", "topic must not end in %q, which names dead-letter topics", wire.DLQSuffix)
	}
	return nil
}

func maxChars(field, s string, limit int) error {
	if utf8.RuneCountInString(s) > limit {
		return invalid("field_too_long", "%s is longer than %d characters", field, limit)
	}
	return nil
}

// showSystem fills nil lists so every answer has the documented arrays.
func showSystem(sys lethe.System) lethe.System {
	if sys.Identifiers == nil {
		sys.Identifiers = []string{}
	}
	if sys.Produces == nil {
		sys.Produces = []string{}
	}
	if sys.After == nil {
		sys.After = []string{}
	}
	if sys.Mode == "" {
		sys.Mode = lethe.ModeKafka
	}
	return sys
}

func (s *Server) putSystem(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !lethe.ValidSystemName(name) {
		s.writeError(w, r, invalidName())
		return
	}
	var req systemRequest
	if err := decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	sys, err := req.toSystem(name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// A caller who may not move the system's commands is refused before
	// any topic is created; the store checks again under its lock, against
	// a concurrent change.
	write := systemWrite(r)
	if !write.MayChangeTopic {
		if old, err := s.store.GetSystem(r.Context(), name); err == nil && old.Topic != sys.Topic {
			s.writeError(w, r, registry.ErrTopicChangeForbidden())
			return
		} else if err != nil && lethe.ErrorKind(err) != lethe.KindNotFound {
			s.writeError(w, r, err)
			return
		}
	}
	// The topics come first: a system is only registered once its commands
	// have somewhere to go, and a failed PUT leaves nothing half-done.
	if err := s.topics.EnsureTopics(r.Context(), sys.Topic, wire.DLQTopic(sys.Topic)); err != nil {
		s.writeError(w, r, kafkaUnavailable(err))
		return
	}
	stored, created, err := s.store.PutSystem(r.Context(), sys, write)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if created {
		w.Header().Set("Location", "/v1/systems/"+name)
	}
	writeJSON(w, putStatus(created), showSystem(stored))
}

func (s *Server) getSystem(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !lethe.ValidSystemName(name) {
		s.writeError(w, r, invalidName())
		return
	}
	sys, err := s.store.GetSystem(r.Context(), name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, showSystem(sys))
}

// systemStats answers an active system's recent health (lethe.SystemStats).
func (s *Server) systemStats(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !lethe.ValidSystemName(name) {
		s.writeError(w, r, invalidName())
		return
	}
	st, err := s.store.SystemStats(r.Context(), name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) deleteSystem(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !lethe.ValidSystemName(name) {
		s.writeError(w, r, invalidName())
		return
	}
	if err := s.store.RetireSystem(r.Context(), name, actorOf(r)); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listSystems(w http.ResponseWriter, r *http.Request) {
	systems, err := s.store.ListSystems(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := systemList{Items: make([]lethe.System, 0, len(systems))}
	for _, sys := range systems {
		out.Items = append(out.Items, showSystem(sys))
	}
	writeJSON(w, http.StatusOK, out)
}

// kafkaUnavailable classifies a topic-creation failure: one the ensurer
// already classified keeps its kind, anything else means the broker could
// not be reached or refused, which the client can only wait out.
func kafkaUnavailable(err error) error {
	if lethe.ErrorKind(err) != lethe.KindInternal {
		return err
	}
	return joinKind(lethe.Errorf(lethe.KindUnavailable, "kafka_unavailable",
		"the system's Kafka topics could not be created; try again later"), err)
}

// putStatus is a PUT's answer: 201 when it created the resource, 200 when
// it replaced one.
func putStatus(created bool) int {
	if created {
		return http.StatusCreated
	}
	return http.StatusOK
}
