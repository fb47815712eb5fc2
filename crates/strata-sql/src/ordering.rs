//! Aggregates that only look sorted because a grouping column is a constant.
//!
//! `WHERE dt = $run_date … GROUP BY post_id, dt` makes `dt` a constant of the aggregate's
//! input, and DataFusion 53 then plans the aggregate as `PartiallySorted` on `dt`: it waits
//! for a change of `dt` to emit finished groups, which never comes. Under memory pressure such
//! an aggregate cannot emit early (partial mode clamps the early emit to the sort boundary,
//! here none) and, in final mode, fails while spilling — so a daily model whose groups
//! outgrow its share of the pool fails with "resources exhausted" instead of spilling
//! (`dws_post_daily` at 300k users). The constant buys nothing: one value of `dt` means no
//! group finishes before the input ends.
//!
//! [`UnorderedConstantAggregates`] re-plans each aggregate whose sorted grouping columns are
//! all constants over a view of its input that claims no ordering and no constants
//! ([`PropertiesExec`]), so the aggregate is `Linear` and spills like any other; a second
//! [`PropertiesExec`] above it reports the original aggregate's properties (true of the
//! output: the constant stays constant), so nothing the operators above relied on changes.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, InputOrderMode,
    PlanProperties, SendableRecordBatchStream, Statistics,
};

/// Physical optimizer rule: aggregates "sorted" only on constants become `Linear`. Runs last,
/// after distribution and sorting are settled.
#[derive(Debug, Default)]
pub struct UnorderedConstantAggregates;

impl PhysicalOptimizerRule for UnorderedConstantAggregates {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(agg) = node.as_any().downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            let groups = agg.group_expr().expr();
            let sorted: Vec<usize> = match agg.input_order_mode() {
                InputOrderMode::Linear => return Ok(Transformed::no(node)),
                InputOrderMode::PartiallySorted(at) => at.clone(),
                InputOrderMode::Sorted => (0..groups.len()).collect(),
            };
            let input = agg.input();
            let eq = input.equivalence_properties();
            let only_constants = !sorted.is_empty()
                && sorted.iter().all(|&i| {
                    groups
                        .get(i)
                        .is_some_and(|(e, _)| eq.is_expr_constant(e).is_some())
                });
            // All grouping columns constant: one group, nothing to hold in memory.
            if !only_constants || sorted.len() == groups.len() {
                return Ok(Transformed::no(node));
            }
            let plain = PlanProperties::new(
                EquivalenceProperties::new(input.schema()),
                input.output_partitioning().clone(),
                input.pipeline_behavior(),
                input.boundedness(),
            );
            let unordered = PropertiesExec::new(input.clone(), plain);
            let linear = node.clone().with_new_children(vec![Arc::new(unordered)])?;
            let reported = PlanProperties::new(
                node.equivalence_properties().clone(),
                linear.output_partitioning().clone(),
                linear.pipeline_behavior(),
                linear.boundedness(),
            );
            let reported = PropertiesExec::new(linear, reported);
            Ok(Transformed::yes(
                Arc::new(reported) as Arc<dyn ExecutionPlan>
            ))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "UnorderedConstantAggregates"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Its input's rows, reported with the given plan properties.
#[derive(Debug)]
pub struct PropertiesExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl PropertiesExec {
    fn new(input: Arc<dyn ExecutionPlan>, properties: PlanProperties) -> Self {
        PropertiesExec {
            input,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for PropertiesExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let orderings = self.properties.equivalence_properties().oeq_class().len();
        write!(f, "PropertiesExec: orderings={orderings}")
    }
}

impl ExecutionPlan for PropertiesExec {
    fn name(&self) -> &str {
        "PropertiesExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(PropertiesExec {
            input: children.swap_remove(0),
            properties: self.properties.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }

    fn partition_statistics(&self, partition: Option<usize>) -> Result<Statistics> {
        self.input.partition_statistics(partition)
    }
}
