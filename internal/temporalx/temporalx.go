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
	"go.temporal.io/sdk/converter"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"

	"github.com/lethe-dev/lethe/workflows"
)

// ClientOptions are the options of every Temporal client Lethe makes, so
// that all of them encode payloads alike: a worker must read what the API
// wrote. dc is the payload converter (codec.DataConverter when payloads are
// encrypted, nil for the SDK's default). With a converter, failure messages
// and stack traces are encoded by it too, since an error text is as durable
// in the history as a payload.
func ClientOptions(address, namespace string, logger *slog.Logger, dc converter.DataConverter) client.Options {
	opts := client.Options{
		HostPort:  address,
		Namespace: namespace,
		Logger:    sdklog.NewStructuredLogger(logger),
	}
	if dc != nil {
		opts.DataConverter = dc
		opts.FailureConverter = temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
			DataConverter:          dc,
			EncodeCommonAttributes: true,
		})
	}
	return opts
}

// Dial connects to the Temporal frontend at address, in namespace, logging
// through logger and encoding payloads with dc (see ClientOptions). It fails
// when the server does not answer, so a role that cannot reach Temporal says
// so at start instead of later.
func Dial(ctx context.Context, address, namespace string, logger *slog.Logger, dc converter.DataConverter) (client.Client, error) {
	return DialOptions(ctx, ClientOptions(address, namespace, logger, dc))
}

// DialOptions is Dial with options of the caller's, such as ClientOptions
// secured by Transport.Apply.
func DialOptions(ctx context.Context, opts client.Options) (client.Client, error) {
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("connect to temporal at %s: %w", opts.HostPort, err)
	}
	return c, nil
}

// SearchAttributesRegistered reports whether namespace holds every one of
// Lethe's custom search attributes, with its type.
func SearchAttributesRegistered(ctx context.Context, c client.Client, namespace string) (bool, error) {
	res, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{
		Namespace: namespace,
	})
	if err != nil {
		return false, fmt.Errorf("list search attributes of namespace %s: %w", namespace, err)
	}
	for name, typ := range workflows.SearchAttributeTypes {
		if got, ok := res.GetCustomAttributes()[name]; !ok || got != typ {
			return false, nil
		}
	}
	return true, nil
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
