import { lazy } from "react";
import { Route, Routes } from "react-router-dom";

// The editor is the heaviest screen of the area and only operators open it: its own chunk.
const ReleaseEditor = lazy(() => import("./ReleaseEditor"));
const ReleasePage = lazy(() => import("./ReleasePage"));
const FleetPage = lazy(() => import("./FleetPage"));
const FleetsPage = lazy(() => import("./FleetsPage"));

/** Everything under /fleets. */
export default function FleetsArea() {
  return (
    <Routes>
      <Route index element={<FleetsPage />} />
      <Route path="releases/new" element={<ReleaseEditor />} />
      <Route path="releases/:id" element={<ReleasePage />} />
      <Route path=":id" element={<FleetPage />} />
    </Routes>
  );
}
