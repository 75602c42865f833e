/**
 * onnxruntime-node 1.30's Linux library carries Microsoft's telemetry SDK ("MATSDK"): unless
 * ORT_DISABLE_TELEMETRY is set it leaves mat-debug-<pid>.log in the temporary directory for
 * every process, and its own messages say it uploads over HTTPS when it finds a CA bundle. A
 * device serves other people's jobs and must not phone home, so it is off unless the provider
 * sets the variable.
 * onnxruntime reads it when it creates its environment (the first session): a process sets it
 * before creating any.
 */
export function keepOrtTelemetryOff(): void {
  process.env.ORT_DISABLE_TELEMETRY ??= '1'
}
