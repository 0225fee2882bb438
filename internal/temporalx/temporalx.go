// Package temporalx dials Temporal the same way in every role and keeps the
// namespace ready for Lethe's workflows (its custom search attributes).
package temporalx

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/lethe-dev/lethe/workflows"
)

// Dial connects to the Temporal frontend at address, in namespace, logging
// through logger. It fails when the server does not answer, so a role that
// cannot reach Temporal says so at start instead of later.
func Dial(ctx context.Context, address, namespace string, logger *slog.Logger) (client.Client, error) {
	c, err := client.DialContext(ctx, client.Options{
		HostPort:  address,
		Namespace: namespace,
		Logger:    sdklog.NewStructuredLogger(logger),
	})
	if err != nil {
		return nil, fmt.Errorf("connect to temporal at %s: %w", address, err)
	}
	return c, nil
}

// RegisterSearchAttributes adds Lethe's custom search attributes to
// namespace. Temporal treats a repeat as a no-op, so every start may call it;
// a workflow that upserts an unregistered attribute would otherwise stall.
func RegisterSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	_, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        namespace,
		SearchAttributes: workflows.SearchAttributeTypes,
	})
	if err != nil {
		names := slices.Sorted(maps.Keys(workflows.SearchAttributeTypes))
		return fmt.Errorf("register search attributes %v in namespace %s: %w", names, namespace, err)
	}
	return nil
}
