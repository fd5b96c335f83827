import { Loading } from "./Loading";

/** Stand-in route for an area whose page is being built in parallel; replaced before release. */
export default function Pending() {
  return <Loading label="Loading page" />;
}
