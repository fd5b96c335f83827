/** Line colours, one per device in the order chosen (the same device has the same colour in every chart).
 *  Distinct for common colour-vision deficiencies (Okabe-Ito plus darker tones). */
const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000", "#7f6000",
  "#4b0082", "#8c564b"];

export function lineColor(index: number): string {
  return PALETTE[index % PALETTE.length];
}
