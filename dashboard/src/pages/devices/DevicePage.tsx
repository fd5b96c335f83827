import { useParams } from "react-router-dom";

import { useDevice } from "../../api/devices";
import { ErrorAlert } from "../../components/ErrorAlert";
import { Loading } from "../../components/Loading";
import { PageHeader } from "../../components/PageHeader";
import { OnlineChip } from "../../components/StatusChip";

export default function DevicePage() {
  const { uuid = "" } = useParams();
  const q = useDevice(uuid);
  if (q.isPending) return <Loading label="Loading device" />;
  if (q.isError) return <ErrorAlert error={q.error} onRetry={() => void q.refetch()} />;
  return <PageHeader title={q.data.name} subtitle={<OnlineChip online={q.data.online} />} />;
}
