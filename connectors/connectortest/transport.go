package connectortest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/kafkasec"
	"github.com/lethe-dev/lethe/wire"
)

// The Kafka transport of the checks, shared by the in-process kit and the
// black-box run: commands written to a topic, confirmations read from
// wire.ConfirmationsTopic, dead letters read from the topic's DLQ. Both read
// each partition from the offset it had when they started, with no consumer
// group: nothing is committed, so a relay reading the same topics in its own
// group misses nothing.

// link is one run's connection to the brokers: the writer of commands and
// the reader of confirmations every session shares.
type link struct {
	brokers []string
	sec     kafkasec.Security
	log     *slog.Logger
	w       *kafka.Writer
	feed    *feed
}

// dial connects to brokers and starts reading the confirmations topic,
// creating it when missing (Lethe's own; on the kit's broker nobody else
// does).
func dial(ctx context.Context, brokers []string, sec kafkasec.Security, log *slog.Logger) (*link, error) {
	if err := kafkasec.EnsureTopics(ctx, brokers, sec, connectors.DefaultPartitions, wire.ConfirmationsTopic); err != nil {
		return nil, fmt.Errorf("set up the confirmations topic: %w", err)
	}
	l := &link{brokers: brokers, sec: sec, log: log, w: kafkasec.NewWriter(brokers, sec)}
	var err error
	if l.feed, err = startFeed(ctx, l); err != nil {
		l.w.Close()
		return nil, err
	}
	return l, nil
}

func (l *link) close() {
	l.feed.close()
	l.w.Close()
}

// signing says how a session signs a command it sends.
type signing int

const (
	// signAsLethe signs with the session's credential, as Lethe's worker
	// does, or not at all when the session has none.
	signAsLethe signing = iota
	// signNone sends the command unsigned.
	signNone
	// signForged signs under the session's key id with another secret.
	signForged
)

// kafkaSession sends to one command topic and finds what comes back of it.
type kafkaSession struct {
	l      *link
	topic  string
	keyID  string
	secret []byte // nil: commands unsigned, confirmations unchecked
	forger []byte // the other secret of signForged
	dlq    *deadLetters
}

// session starts reading topic's dead letters, creating the dead-letter
// topic when missing (as the Go SDK does), and returns a session on topic.
func (l *link) session(ctx context.Context, topic, keyID string, secret []byte) (*kafkaSession, error) {
	dlq := wire.DLQTopic(topic)
	if err := kafkasec.EnsureTopics(ctx, l.brokers, l.sec, connectors.DefaultPartitions, dlq); err != nil {
		return nil, fmt.Errorf("set up the dead-letter topic %s: %w", dlq, err)
	}
	_, forger, err := newCredential()
	if err != nil {
		return nil, err
	}
	s := &kafkaSession{l: l, topic: topic, keyID: keyID, secret: secret, forger: forger,
		dlq: &deadLetters{byKey: make(map[string][]deadLetter), arrived: make(chan struct{})}}
	if s.dlq.tail, err = startTail(ctx, l, dlq, s.dlq.add); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *kafkaSession) close() { s.dlq.tail.close() }

// send writes cmd to the session's topic, signed as how says.
func (s *kafkaSession) send(ctx context.Context, cmd wire.Command, how signing) error {
	s.l.feed.expect(cmd.CommandID)
	msg, err := connectors.EncodeCommand(s.topic, cmd)
	if err != nil {
		return fmt.Errorf("encode a command: %w", err)
	}
	return s.write(ctx, msg, how)
}

// sendRaw writes value under key, with the header of a command and signed
// as Lethe would sign it, so that only its content is wrong.
func (s *kafkaSession) sendRaw(ctx context.Context, key string, value []byte) error {
	msg := kafka.Message{Topic: s.topic, Key: []byte(key), Value: value,
		Headers: []kafka.Header{{Key: wire.HeaderSchema, Value: []byte(wire.SchemaCommand)}}}
	return s.write(ctx, msg, signAsLethe)
}

func (s *kafkaSession) write(ctx context.Context, msg kafka.Message, how signing) error {
	switch {
	case how == signAsLethe && s.secret != nil:
		signWith(s.keyID, s.secret)(&msg)
	case how == signForged:
		signWith(s.keyID, s.forger)(&msg)
	}
	if err := connectors.WriteAll(ctx, s.l.w, s.l.log, msg); err != nil {
		return fmt.Errorf("send a command to %s: %w", s.topic, err)
	}
	return nil
}

// confirmation returns the n-th confirmation of commandID (n counts from 1)
// once it arrives, or an error when ctx ends or stop is closed first. With
// a credential it must be signed with it.
func (s *kafkaSession) confirmation(ctx context.Context, commandID string, n int, stop <-chan struct{}) (wire.Confirmation, error) {
	confs, err := s.l.feed.wait(ctx, commandID, n, stop)
	if err != nil {
		return wire.Confirmation{}, err
	}
	if s.secret != nil {
		m := s.l.feed.messages(commandID)[n-1]
		gotKey, _ := connectors.Header(m, wire.HeaderKeyID)
		sig, _ := connectors.Header(m, wire.HeaderSignature)
		if gotKey != s.keyID || !wire.Verify(s.secret, m.Value, sig) {
			return wire.Confirmation{}, &signatureError{fmt.Sprintf("the confirmation of a correctly signed command carries %s %q and a signature that does not verify; it must be signed with the connector's credential over its value bytes. %s",
				wire.HeaderKeyID, gotKey, fixSigned)}
		}
	}
	return confs[n-1], nil
}

// signatureError is a confirmation that arrived with a signature that does
// not hold.
type signatureError struct{ msg string }

func (e *signatureError) Error() string { return e.msg }

// confirmed counts the confirmations of commandID seen so far.
func (s *kafkaSession) confirmed(commandID string) int { return len(s.l.feed.messages(commandID)) }

// deadLetter waits for the dead letter of the message sent under key.
func (s *kafkaSession) deadLetter(ctx context.Context, key string) (deadLetter, error) {
	return s.dlq.wait(ctx, key)
}

// deadLetter is what the checks look at in a dead-lettered message.
type deadLetter struct {
	reason string
	value  []byte
}

// deadLetters keeps the dead letters of one topic by key.
type deadLetters struct {
	tail    *tail
	mu      sync.Mutex
	byKey   map[string][]deadLetter
	arrived chan struct{} // closed and replaced at each arrival
}

func (d *deadLetters) add(m kafka.Message) {
	reason, _ := connectors.Header(m, wire.HeaderDLQReason)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.byKey[string(m.Key)] = append(d.byKey[string(m.Key)], deadLetter{reason: reason, value: m.Value})
	close(d.arrived)
	d.arrived = make(chan struct{})
}

func (d *deadLetters) wait(ctx context.Context, key string) (deadLetter, error) {
	for {
		d.mu.Lock()
		got, arrived := d.byKey[key], d.arrived
		d.mu.Unlock()
		if len(got) > 0 {
			return got[0], nil
		}
		select {
		case <-arrived:
		case <-ctx.Done():
			return deadLetter{}, ctx.Err()
		}
	}
}

// tail reads every partition of a topic from the offset it had when the
// tail started, handing each message to fn.
type tail struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startTail(ctx context.Context, l *link, topic string, fn func(kafka.Message)) (*tail, error) {
	client := &kafka.Client{Addr: kafka.TCP(l.brokers...), Transport: l.sec.Transport()}
	partitions, err := topicPartitions(ctx, client, topic)
	if err != nil {
		return nil, err
	}
	var reqs []kafka.OffsetRequest
	for _, p := range partitions {
		reqs = append(reqs, kafka.LastOffsetOf(p.ID))
	}
	res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("read the offsets of %s: %w", topic, err)
	}
	offsets := res.Topics[topic]
	if len(offsets) != len(reqs) {
		return nil, fmt.Errorf("read the offsets of %s: %d partitions answered of %d", topic, len(offsets), len(reqs))
	}
	rctx, cancel := context.WithCancel(context.Background())
	t := &tail{cancel: cancel}
	for _, po := range offsets {
		if po.Error != nil {
			t.close()
			return nil, fmt.Errorf("read the offsets of %s: %w", topic, po.Error)
		}
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers:   l.brokers,
			Dialer:    l.sec.Dialer(),
			Topic:     topic,
			Partition: po.Partition,
			MinBytes:  1,
			MaxBytes:  10 << 20,
			MaxWait:   250 * time.Millisecond,
		})
		if err := r.SetOffset(po.LastOffset); err != nil {
			r.Close()
			t.close()
			return nil, fmt.Errorf("position a reader of %s: %w", topic, err)
		}
		t.wg.Add(1)
		go t.read(rctx, r, fn)
	}
	return t, nil
}

// topicPartitions returns topic's partitions, waiting while the cluster
// reports none: a topic someone else is creating at the same moment (a
// connector starting) shows up without partitions for a while.
func topicPartitions(ctx context.Context, client *kafka.Client, topic string) ([]kafka.Partition, error) {
	for {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err != nil {
			return nil, fmt.Errorf("read the metadata of %s: %w", topic, err)
		}
		if len(md.Topics) == 1 && md.Topics[0].Error == nil && len(md.Topics[0].Partitions) > 0 {
			return md.Topics[0].Partitions, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the topic %s has no partitions", topic)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (t *tail) read(ctx context.Context, r *kafka.Reader, fn func(kafka.Message)) {
	defer t.wg.Done()
	defer r.Close()
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// kafka-go retries the connection itself; pause so a
			// persistent error does not spin.
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		fn(m)
	}
}

func (t *tail) close() {
	t.cancel()
	t.wg.Wait()
}

// feed keeps the confirmations of the commands the run sent, read from the
// confirmations topic from where it ended when the run started. Reading each
// partition from an offset taken before any command was sent, rather than
// joining a consumer group at the topic's end, means no confirmation can
// slip by before the reader is assigned its partitions.
type feed struct {
	tail    *tail
	mu      sync.Mutex
	byCmd   map[string][]wire.Confirmation      // only the commands expected
	batches map[string][]wire.BatchConfirmation // likewise, of batch commands
	raw     map[string][]kafka.Message          // their messages, headers included
	arrived chan struct{}                       // closed and replaced at each arrival
}

func startFeed(ctx context.Context, l *link) (*feed, error) {
	f := &feed{byCmd: make(map[string][]wire.Confirmation), raw: make(map[string][]kafka.Message),
		batches: make(map[string][]wire.BatchConfirmation), arrived: make(chan struct{})}
	var err error
	if f.tail, err = startTail(ctx, l, wire.ConfirmationsTopic, f.add); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *feed) add(m kafka.Message) {
	if bc, err := wire.DecodeBatchConfirmation(m.Value); err == nil {
		f.mu.Lock()
		defer f.mu.Unlock()
		if confs, ok := f.batches[bc.CommandID]; ok {
			f.batches[bc.CommandID] = append(confs, bc)
			close(f.arrived)
			f.arrived = make(chan struct{})
		}
		return
	}
	conf, err := wire.DecodeConfirmation(m.Value)
	if err != nil {
		return // not one of ours: the run checks only its own commands
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if confs, ok := f.byCmd[conf.CommandID]; ok {
		f.byCmd[conf.CommandID] = append(confs, conf)
		f.raw[conf.CommandID] = append(f.raw[conf.CommandID], m)
		close(f.arrived)
		f.arrived = make(chan struct{})
	}
}

func (f *feed) close() { f.tail.close() }

// expect makes the feed keep the confirmations of commandID; it must be
// called before the command is sent.
func (f *feed) expect(commandID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.byCmd[commandID]; !ok {
		f.byCmd[commandID] = nil
	}
}

// expectBatch is expect for a batch command.
func (f *feed) expectBatch(commandID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.batches[commandID]; !ok {
		f.batches[commandID] = nil
	}
}

// waitBatch returns the batch confirmations of commandID once there are at
// least n, or an error when ctx ends or stop is closed first. The kit's
// batches are small enough for one confirmation each.
func (f *feed) waitBatch(ctx context.Context, commandID string, n int, stop <-chan struct{}) ([]wire.BatchConfirmation, error) {
	return awaitFeed(ctx, f, func() []wire.BatchConfirmation { return f.batches[commandID] }, n, stop)
}

// messages returns the messages of commandID's confirmations so far.
func (f *feed) messages(commandID string) []kafka.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.raw[commandID])
}

// wait returns the confirmations of commandID once there are at least n,
// or an error when ctx ends or stop is closed first.
func (f *feed) wait(ctx context.Context, commandID string, n int, stop <-chan struct{}) ([]wire.Confirmation, error) {
	return awaitFeed(ctx, f, func() []wire.Confirmation { return f.byCmd[commandID] }, n, stop)
}

// awaitFeed waits until pick, read under f's lock, returns at least n
// messages, and returns a copy of them.
func awaitFeed[T any](ctx context.Context, f *feed, pick func() []T, n int, stop <-chan struct{}) ([]T, error) {
	for {
		f.mu.Lock()
		got, arrived := pick(), f.arrived
		f.mu.Unlock()
		if len(got) >= n {
			return slices.Clone(got), nil
		}
		select {
		case <-arrived:
		case <-stop:
			return nil, errors.New("connector stopped")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
