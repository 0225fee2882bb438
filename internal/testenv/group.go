package testenv

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Group is a consumer group as its coordinator describes it: its state and
// the partitions of topic each member holds, by member id.
type Group struct {
	State   string
	Members map[string][]int
}

// Stable reports whether the group is done rebalancing and its members,
// together, hold every one of partitions partitions of its topic.
func (g Group) Stable(partitions int) bool {
	if g.State != "Stable" {
		return false
	}
	var held []int
	for _, ps := range g.Members {
		held = append(held, ps...)
	}
	slices.Sort(held)
	return len(held) == partitions && (partitions == 0 || held[0] == 0 && held[len(held)-1] == partitions-1)
}

// DescribeGroup asks the broker at brokers[0] how group stands on topic.
func DescribeGroup(ctx context.Context, brokers []string, group, topic string) (Group, error) {
	c := &kafka.Client{Addr: kafka.TCP(brokers...)}
	res, err := c.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return Group{}, err
	}
	if len(res.Groups) != 1 {
		return Group{}, fmt.Errorf("describe group %s: %d groups in the answer", group, len(res.Groups))
	}
	d := res.Groups[0]
	if d.Error != nil {
		return Group{}, fmt.Errorf("describe group %s: %w", group, d.Error)
	}
	g := Group{State: d.GroupState, Members: map[string][]int{}}
	for _, m := range d.Members {
		g.Members[m.MemberID] = nil
		for _, t := range m.MemberAssignments.Topics {
			if t.Topic == topic {
				g.Members[m.MemberID] = append(g.Members[m.MemberID], t.Partitions...)
			}
		}
	}
	return g, nil
}

// AwaitGroup describes group until cond holds for it and returns that
// description; it fails the test, with the last description, when ctx ends
// first.
func AwaitGroup(ctx context.Context, t testing.TB, brokers []string, group, topic string, what string, cond func(Group) bool) Group {
	t.Helper()
	var last Group
	var lastErr error
	for {
		g, err := DescribeGroup(ctx, brokers, group, topic)
		if err == nil && cond(g) {
			return g
		}
		last, lastErr = g, err
		select {
		case <-ctx.Done():
			t.Fatalf("consumer group %s: %s: not reached; last seen %+v (error %v)", group, what, last, lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// RecordSessions returns what session timeouts, in milliseconds, the
// members of group have asked for in their JoinGroup requests to cluster so
// far: how a test sees that a consumer's configuration reached the broker.
func RecordSessions(c *kfake.Cluster, group string) func() []int32 {
	var mu sync.Mutex
	var seen []int32
	c.ControlKey(kmsg.JoinGroup.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if j, ok := req.(*kmsg.JoinGroupRequest); ok && j.Group == group {
			mu.Lock()
			seen = append(seen, j.SessionTimeoutMillis)
			mu.Unlock()
		}
		return nil, nil, false
	})
	return func() []int32 {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}
