/** Whether this browser can draw WebGL, asked before the 3D chunk is even loaded. Headless browsers started with
 * --disable-gpu, old machines and locked-down policies have none; the page then says so and keeps the tree. */
export function webglUnavailableReason(doc: Document = document): string | null {
  try {
    const canvas = doc.createElement("canvas");
    const gl = (canvas.getContext("webgl2") ?? canvas.getContext("webgl")) as WebGLRenderingContext | null;
    if (!gl) return "This browser cannot draw 3D graphics here (WebGL is unavailable or turned off).";
    // Browsers cap live WebGL contexts: give this probe's back at once.
    gl.getExtension("WEBGL_lose_context")?.loseContext();
    return null;
  } catch (err) {
    return `WebGL failed to start: ${err instanceof Error ? err.message : String(err)}`;
  }
}
