import { Component, type ErrorInfo, type ReactNode } from "react";

import { ErrorAlert } from "./ErrorAlert";

interface State {
  error: unknown;
}

/** A page that throws (or a lazy chunk that fails to load) shows its error instead of blanking the app. */
export class ErrorBoundary extends Component<{ children: ReactNode }, State> {
  state: State = { error: null };

  static getDerivedStateFromError(error: unknown): State {
    return { error };
  }

  componentDidCatch(error: unknown, info: ErrorInfo): void {
    console.error("page failed", error, info.componentStack);
  }

  render() {
    if (this.state.error != null) {
      return <ErrorAlert title="This page failed to load" error={this.state.error}
        onRetry={() => this.setState({ error: null })} />;
    }
    return this.props.children;
  }
}
