import { lazy } from "react";
import { Route, Routes } from "react-router-dom";

const MqttAccountsPage = lazy(() => import("./MqttAccountsPage"));
const MqttAccountPage = lazy(() => import("./MqttAccountPage"));

/** Everything under /mqtt: the accounts, and one account with its ACL rules. */
export default function MqttArea() {
  return (
    <Routes>
      <Route index element={<MqttAccountsPage />} />
      <Route path="accounts/:id" element={<MqttAccountPage />} />
    </Routes>
  );
}
